"""The search-index stage and queries on real documents of the sample WARCs, with answers known in advance."""

from __future__ import annotations

import json
import shutil

import pytest

from fineforge.tasks.common.stage import STATS_FILE
from fineforge.tasks.search.config import SearchIndexConfig, corpus_dumps, index_path, indexed_dumps
from fineforge.tasks.search.index import SearchError
from fineforge.tasks.search.job import build_search_index
from fineforge.tasks.search.query import CorpusSearch
from testkit.search_corpus import BENCH_DUMP, write_dump, write_sample_corpus

WIKIPEDIA = "https://an.wikipedia.org/wiki/Escopete"
AUSTRALIA_PHOTO = "http://0pointer.de/photos/?gallery=Australia&photo=496"
LEMIRE = "https://lemire.me/blog/2019/08/02/json-parsing-simdjson-vs-json-for-modern-c/"


@pytest.fixture(scope="module")
def indexed(shared_data, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("search")
    documents = write_sample_corpus(shared_data, workdir)
    output = build_search_index(workdir, SearchIndexConfig(workdir=str(workdir)))
    assert output.path == index_path(workdir) and not output.skipped
    return workdir, documents, output.statistics


def test_every_dump_is_indexed_with_consistent_statistics(indexed):
    workdir, documents, stats = indexed
    written = json.loads((index_path(workdir) / STATS_FILE).read_text())
    assert written == stats
    assert sorted(indexed_dumps(workdir)) == corpus_dumps(workdir) == sorted(documents)
    for dump, count in documents.items():
        counts = stats["dumps"][dump]
        assert counts["documents_in"] == count and counts["reindexed"]
        assert counts["documents_out"] + counts["empty"] == count
        assert counts["passages"] >= counts["documents_out"] > 0
    assert stats["documents_in"] == sum(documents.values())
    assert stats["documents_out"] + stats["dropped"]["empty"] == stats["documents_in"]
    assert stats["index_bytes"] > 0 and stats["dumps"][BENCH_DUMP]["documents_out"] > 900


@pytest.mark.parametrize("query, url", [
    ("Escopete", WIKIPEDIA),  # the CC-MAIN-2024-22 page, in Aragonese
    ("Canon EOS 350D photo", AUSTRALIA_PHOTO),  # not the other 0pointer.de photo page (a Canon REBEL T2i)
    ("simdjson JSON parsing speed", LEMIRE),  # one of the 990 pages
])
def test_known_answers_rank_first_over_all_dumps(indexed, query, url):
    workdir, _, _ = indexed
    hits = CorpusSearch(workdir).search(query, k=5)
    assert hits[0].url == url, [(h.score, h.url) for h in hits]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len({(h.dump, h.doc_id) for h in hits}) == len(hits)  # one passage per document


def test_search_can_be_limited_to_named_dumps(indexed):
    workdir, _, _ = indexed
    assert CorpusSearch(workdir, ["CC-MAIN-2024-22"]).search("Escopete")[0].url == WIKIPEDIA
    assert all(h.url != WIKIPEDIA for h in CorpusSearch(workdir, ["CC-MAIN-2014-35"]).search("Escopete"))


def test_model_written_queries_never_meet_the_query_syntax(indexed):
    workdir, _, _ = indexed
    search = CorpusSearch(workdir, k=2)
    hits = search.search('What is "Escopete"?: (AND -OR ~^*[ +')
    assert hits[0].url == WIKIPEDIA
    text = search("Tell me about Escopete")
    assert text.startswith("[1] ") and f"({WIKIPEDIA})" in text.splitlines()[0]
    assert search("?!") == "search error: the query has no words to search for: '?!'"
    assert search("qwxzzyv") == "no results for: qwxzzyv"


def test_equal_scores_come_in_the_order_of_dump_document_and_position(tmp_path):
    # 60 documents alike, written (and so indexed) last id first: tantivy alone cuts the tie by index order
    text = "Alpha beta gamma delta epsilon."
    write_dump(tmp_path, "D", [(f"doc-{i:03d}", f"https://example.org/{i}", text) for i in reversed(range(60))])
    build_search_index(tmp_path, SearchIndexConfig(workdir=str(tmp_path)))
    hits = CorpusSearch(tmp_path, k=3).search("gamma")
    assert [hit.doc_id for hit in hits] == ["doc-000", "doc-001", "doc-002"]
    assert len({hit.score for hit in hits}) == 1


def test_a_blank_in_the_query_is_marked_in_the_results(indexed):
    workdir, _, _ = indexed
    search = CorpusSearch(workdir, k=1)
    words = search.search("simdjson JSON parsing speed")[0].text.split()
    at = next(i for i, word in enumerate(words) if i >= 4 and word.isalpha() and len(word) > 4)
    query = " ".join([*words[at - 4:at], "___", *words[at + 1:at + 5]])
    results = search(query)
    assert results.startswith(f"___ = {words[at]}\n\n[1] ") and results.count(f"**{words[at]}**") == 1, query


def test_a_missing_index_names_the_command_that_builds_it(indexed, tmp_path):
    workdir, _, _ = indexed
    with pytest.raises(SearchError, match=f"no search index in {tmp_path}: build it with "
                                          f"`fineforge search build --workdir {tmp_path}`"):
        CorpusSearch(tmp_path)
    with pytest.raises(SearchError, match="no search index for CC-MAIN-1999-01 .*--dump CC-MAIN-1999-01`"):
        CorpusSearch(workdir, ["CC-MAIN-1999-01"])


def test_update_is_incremental_per_dump_and_bad_input_loses_nothing(shared_data, tmp_path):
    workdir = tmp_path / "work"
    write_sample_corpus(shared_data, workdir)
    config = SearchIndexConfig(workdir=str(workdir), dumps=["CC-MAIN-2014-35", "CC-MAIN-2024-22"])
    first = build_search_index(workdir, config).statistics
    assert sorted(first["dumps"]) == ["CC-MAIN-2014-35", "CC-MAIN-2024-22"]
    assert build_search_index(workdir, config).skipped is True

    # A new dump is indexed alone; the others' passages are kept as they were.
    write_dump(workdir, "CC-MAIN-2099-01", [("<urn:uuid:new>", "https://example.org/new", "Zanzibar cloves harvest.")])
    second = build_search_index(workdir, SearchIndexConfig(workdir=str(workdir), dumps=["CC-MAIN-2099-01"])).statistics
    assert {d: s["reindexed"] for d, s in second["dumps"].items()} == {
        "CC-MAIN-2014-35": False, "CC-MAIN-2024-22": False, "CC-MAIN-2099-01": True}
    assert second["passages"] == first["passages"] + 1
    search = CorpusSearch(workdir)
    assert search.search("Zanzibar")[0].url == "https://example.org/new"
    assert search.search("Canon EOS 350D")[0].url == AUSTRALIA_PHOTO

    # New passage settings for one dump replace its passages only.
    rebuilt = build_search_index(workdir, SearchIndexConfig(workdir=str(workdir), dumps=["CC-MAIN-2014-35"],
                                                            passage_words=40, passage_overlap=10)).statistics
    assert rebuilt["dumps"]["CC-MAIN-2014-35"]["passages"] > first["dumps"]["CC-MAIN-2014-35"]["passages"]
    assert [rebuilt["dumps"][d]["passages"] for d in ("CC-MAIN-2024-22", "CC-MAIN-2099-01")] == [
        second["dumps"][d]["passages"] for d in ("CC-MAIN-2024-22", "CC-MAIN-2099-01")]
    assert rebuilt["passages"] == sum(counts["passages"] for counts in rebuilt["dumps"].values())
    assert CorpusSearch(workdir).search("Canon EOS 350D", k=10)[0].url == AUSTRALIA_PHOTO

    # A corrupt corpus file fails the update; the complete index before it stays as it was.
    broken = workdir / "CC-MAIN-2099-01" / "scrubbed" / "part-00001.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(Exception, match="Parquet|magic"):
        build_search_index(workdir, SearchIndexConfig(workdir=str(workdir), dumps=["CC-MAIN-2099-01"]))
    assert CorpusSearch(workdir).search("Zanzibar")[0].url == "https://example.org/new"
    assert not [p for p in index_path(workdir).parent.iterdir() if p.name.startswith(".")]  # no temporary left
    broken.unlink()

    # A dump whose corpus is gone leaves the index at the next full update.
    shutil.rmtree(workdir / "CC-MAIN-2099-01")
    final = build_search_index(workdir, SearchIndexConfig(workdir=str(workdir))).statistics
    assert final["removed"] == ["CC-MAIN-2099-01"] and "CC-MAIN-2099-01" not in final["dumps"]
    assert CorpusSearch(workdir)("Zanzibar cloves") == "no results for: Zanzibar cloves"


def test_bad_config_names_the_field(indexed, tmp_path):
    workdir, _, _ = indexed
    with pytest.raises(ValueError, match="workdir\n.*no corpus in .*fineforge data build --workdir"):
        SearchIndexConfig(workdir=str(tmp_path))
    with pytest.raises(ValueError, match="dumps\n.*no corpus for CC-MAIN-1999-01"):
        SearchIndexConfig(workdir=str(workdir), dumps=["CC-MAIN-1999-01"])
    with pytest.raises(ValueError, match="passage_overlap\n.*must be below passage_words"):
        SearchIndexConfig(workdir=str(workdir), passage_words=10, passage_overlap=10)
