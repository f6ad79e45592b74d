"""Search-tool conversations from a real corpus (the sample WARCs' documents) and its real search index."""

from __future__ import annotations

import re

from fineforge.model.chat import ChatTemplate, Conversation
from fineforge.model.tokenizer import OUTPUT_END, OUTPUT_START, SEARCH_END, SEARCH_START, load_tokenizer
from fineforge.tasks.conversations.corpus_search import (
    BLANK,
    DUPLICATE_QUESTION,
    NOT_IN_RESULTS,
    Fact,
    corpus_search_conversations,
    name_span,
    number_span,
    sentences,
)
from fineforge.tasks.conversations.records import SourceCounts
from fineforge.tasks.conversations.tool_turns import stated_answer
from fineforge.tasks.search.query import CorpusSearch

CALL = re.compile(re.escape(SEARCH_START) + "(.*)" + re.escape(SEARCH_END) + re.escape(OUTPUT_START) + "(.*)"
                  + re.escape(OUTPUT_END) + r"(.*)", re.DOTALL)


def blanked(question: str) -> str:
    return re.search(r'"(.*)"$', question).group(1)


def test_the_facts_of_a_sentence():
    assert number_span("A total of 6,000 surgical masks were stolen in Kobe.") == (11, 16)
    assert number_span("The village had 84 inhabitants in the census.") == (16, 18)
    assert number_span("Its area is 19.01 km² after the last survey.") == (12, 17)
    assert number_span("Rooms 12 and 14 were closed for the day.") is None  # two numbers: which one?
    assert number_span("The 3 boys went to the shop on foot.") is None  # one digit is a guess away
    assert number_span("Open at 10:00 a.m. and see you soon, really.") is None  # a time is not one number
    sentence = "Yesterday the mayor of Kobe spoke to Reuters about it."
    assert sentence[slice(*name_span(sentence))] == "Kobe"
    assert name_span("Nothing here is named at all in this line.") is None
    text = "Short one.\nthis starts in lower case and is long enough to count.\nA real sentence with enough words here."
    assert list(sentences(text)) == ["A real sentence with enough words here."]


def test_the_query_is_the_blanked_sentence():
    sentence = "The abbey of Saint Gallen was founded in 1578 by Irish  monks."
    fact = Fact("doc", sentence, "number", *number_span(sentence))
    assert fact.query == "The abbey of Saint Gallen was founded in ___ by Irish monks."


def test_conversations_show_the_real_results_and_an_answer_taken_from_them(search_corpus):
    counts = SourceCounts()
    records = list(corpus_search_conversations(search_corpus, k=3, per_document=3, seed=0, counts=counts))
    assert len(records) > 100
    assert counts.dropped[NOT_IN_RESULTS] > 0 and set(counts.dropped) <= {NOT_IN_RESULTS, DUPLICATE_QUESTION}
    search = CorpusSearch(search_corpus, k=3)
    template = ChatTemplate(load_tokenizer("bytes"))
    kinds = set()
    for record in records:
        question, reply = (m["content"] for m in record.messages)
        query, results, after = CALL.fullmatch(reply).groups()
        cloze = blanked(question)
        assert cloze.count(BLANK) == 1
        assert results == search(query)  # exactly what the runtime pastes for this query
        assert cloze.replace(BLANK, f"**{record.answer}**") in results  # the answer is marked where it stands
        assert after == f"The answer is {record.answer}." and stated_answer(reply) == record.answer
        assert query == " ".join(cloze.split())
        ids, mask = template.render(Conversation.from_messages(record.messages))
        assert sum(mask) == len(query.encode()) + len(after.encode()) + 3  # the results are masked
        kinds.add(record.id.rsplit("-", 1)[1])
    assert kinds == {"number", "name"}
    assert len({r.messages[0]["content"] for r in records}) == len(records)


def test_a_question_whose_sentence_is_not_in_the_top_k_is_dropped(search_corpus):
    wide, narrow = SourceCounts(), SourceCounts()
    kept_wide = list(corpus_search_conversations(search_corpus, k=3, counts=wide))
    kept_narrow = list(corpus_search_conversations(search_corpus, k=1, counts=narrow))
    assert narrow.dropped[NOT_IN_RESULTS] > wide.dropped[NOT_IN_RESULTS]
    assert len(kept_narrow) + narrow.dropped[NOT_IN_RESULTS] == len(kept_wide) + wide.dropped[NOT_IN_RESULTS]
    top1 = CorpusSearch(search_corpus, k=1)
    for record in kept_narrow:
        query = CALL.fullmatch(record.messages[1]["content"]).group(1)
        assert blanked(record.messages[0]["content"]).replace(BLANK, record.answer) in top1.search(query)[0].text


def test_same_seed_same_questions_and_the_control_answers_directly(search_corpus):
    def as_json(records):
        return [r.to_json() for r in records]

    tool = list(corpus_search_conversations(search_corpus, per_document=2, seed=4))
    assert as_json(tool) == as_json(corpus_search_conversations(search_corpus, per_document=2, seed=4))
    assert as_json(tool) != as_json(corpus_search_conversations(search_corpus, per_document=2, seed=5))
    control = list(corpus_search_conversations(search_corpus, per_document=2, seed=4, tool=False))
    assert [(r.id, r.messages[0], r.answer) for r in control] == [(r.id, r.messages[0], r.answer) for r in tool]
    assert all(r.messages[1]["content"] == f"The answer is {r.answer}." for r in control)
    numbers = list(corpus_search_conversations(search_corpus, kinds=["number"]))
    assert numbers and all(re.fullmatch(r"[\d.,]+", r.answer) for r in numbers)
