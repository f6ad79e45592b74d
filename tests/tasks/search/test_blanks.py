"""Fill-in-the-blank queries: the results mark the word a blank stands for."""

from __future__ import annotations

from fineforge.tasks.search.blanks import fill_blanks

PASSAGE = "History. The abbey of Saint Gallen was founded in 1578 by Irish monks. About 6,000 people live there."


def mark_blank(query: str, text: str) -> str:
    return fill_blanks(query, [text])[0][0]


def fillers(query: str, texts: list[str]) -> list[str]:
    return fill_blanks(query, texts)[1]


def test_the_word_between_the_blanks_neighbours_is_marked():
    query = "The abbey of Saint Gallen was founded in ___ by Irish monks."
    assert mark_blank(query, PASSAGE) == PASSAGE.replace("1578", "**1578**")
    assert mark_blank("FOUNDED in ___, by irish", PASSAGE) == PASSAGE.replace("1578", "**1578**")  # case, commas


def test_a_blank_at_either_end_of_the_query_is_anchored_on_one_side():
    assert mark_blank("___ people live there", PASSAGE) == PASSAGE.replace("6,000", "**6,000**")
    assert mark_blank("Gallen was founded in ___", PASSAGE) == PASSAGE.replace("1578", "**1578**")
    assert mark_blank("It is 19.01 or ___.", "It is 19.01 or 20.5.") == "It is 19.01 or **20.5**."


def test_the_most_neighbours_that_occur_decide():
    text = "Born in Kobe in 1990. Raised near Osaka in 1995."
    assert mark_blank("Born in ___ in", text) == "Born in **Kobe** in 1990. Raised near Osaka in 1995."
    # a miscopied word further out: the nearest neighbours still find the place, and every place they fit
    assert mark_blank("Barn in ___ in", text) == "Born in **Kobe** in 1990. Raised near Osaka in 1995."
    assert mark_blank("Raised nearby ___ in", text) == "Born in Kobe in 1990. Raised near Osaka in 1995."
    assert mark_blank("near ___ in 1995", text) == "Born in Kobe in 1990. Raised near **Osaka** in 1995."


def test_no_blank_or_no_match_leaves_the_text_as_it_is():
    for query in ("The abbey of Saint Gallen", "___", "___ ___", "founded on ___ by Irish monks", "in ___ at"):
        assert mark_blank(query, PASSAGE) == PASSAGE, query
    assert mark_blank("in ___ by", "in 1578by Irish") == "in 1578by Irish"  # a word is never cut


def test_the_fillers_of_every_text_in_order_each_once():
    texts = ["Born in Kobe in 1990.", "Born in Osaka in 1995.", "Born in Kobe in 1991."]
    assert fillers("Born in ___ in", texts) == ["Kobe", "Osaka"]
    assert fillers("Born in ___", ["no match here"]) == [] and fillers("no blank", texts) == []
