"""Documents -> passages: word windows with overlap, titles from the first line or the URL."""

from __future__ import annotations

import pytest

from fineforge.tasks.search.passages import PassageConfig, chunk_words, document_passages, document_title, url_title


def words_of(chunk: str) -> list[str]:
    return chunk.split()


def test_windows_overlap_and_cover_every_word():
    text = " ".join(f"w{i}" for i in range(10))
    chunks = chunk_words(text, words=4, overlap=1)
    assert [words_of(c) for c in chunks] == [
        ["w0", "w1", "w2", "w3"], ["w3", "w4", "w5", "w6"], ["w6", "w7", "w8", "w9"]]
    chunks = chunk_words(text, words=4, overlap=2)
    assert [words_of(c)[0] for c in chunks] == ["w0", "w2", "w4", "w6"]
    assert words_of(chunks[-1]) == ["w6", "w7", "w8", "w9"]  # ends at the last word; no window inside another
    chunks = chunk_words(text, words=4, overlap=0)
    assert [words_of(c)[0] for c in chunks] == ["w0", "w4", "w6"]  # the last one full length: w6..w9


def test_windows_keep_the_documents_own_spacing():
    text = "Title line\n\nFirst  sentence here.\tSecond one."
    assert chunk_words(text, words=3, overlap=0) == ["Title line\n\nFirst", "sentence here.\tSecond",
                                                     "here.\tSecond one."]
    assert chunk_words("  short text  ", words=50, overlap=10) == ["short text"]
    assert chunk_words(" \n ", words=5, overlap=0) == []


def test_title_is_a_short_first_line_else_from_the_url():
    url = "https://maria-antoniak.github.io/2023/07/04/notes-on-mastodon.html"
    from_url = "notes on mastodon (maria-antoniak.github.io)"
    assert document_title("\n  Notes on Mastodon \nLong text follows.", url, 15) == "Notes on Mastodon"
    assert document_title("This first line is a sentence.\nMore.", url, 15) == from_url
    assert document_title(" ".join(["word"] * 20), url, 15) == from_url
    assert url_title("https://soldaini.net/") == "soldaini.net"
    assert url_title("http://0x20.be/Special:WhatLinksHere/Thread:Talk:Gentse_feesten/foo") == "foo (0x20.be)"
    assert url_title("https://an.wikipedia.org/wiki/Caf%C3%A9_de_Flore") == "Café de Flore (an.wikipedia.org)"
    assert url_title("") == ""


def test_document_passages_number_positions_and_prefer_a_title_field():
    config = PassageConfig(words=3, overlap=1, title_words=5)
    row = {"id": "<urn:uuid:1>", "url": "https://example.org/a-page", "text": "one two three four five"}
    passages = list(document_passages(row, config))
    assert [(p.position, p.text) for p in passages] == [(0, "one two three"), (1, "three four five")]
    assert {(p.doc_id, p.url, p.title) for p in passages} == {("<urn:uuid:1>", "https://example.org/a-page",
                                                                "one two three four five")}
    titled = list(document_passages({**row, "title": " A Real Title "}, config))
    assert titled[0].title == "A Real Title"
    assert list(document_passages({**row, "text": None}, config)) == []
    assert list(document_passages({"id": "x", "text": "  "}, config)) == []


@pytest.mark.parametrize("values, field", [((0, 0, 5), "words"), ((5, 5, 5), "overlap"), ((5, -1, 5), "overlap"),
                                           ((5, 1, 0), "title words")])
def test_bad_passage_config_names_the_field(values, field):
    with pytest.raises(ValueError, match=field):
        PassageConfig(*values)
