"""The per-document part of the filtering: config, datatrove steps on real extracted pages, no Spark."""

from __future__ import annotations

import copy
from collections import Counter
from itertools import islice

import pytest
from datatrove.data import Document
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    LanguageFilter,
    URLFilter,
)
from datatrove.utils.word_tokenizers import load_word_tokenizer
from pydantic import ValidationError

from fineforge.tasks.common.datatrove_steps import pipeline_statistics, run_steps, step_name
from fineforge.tasks.common.word_tokenizer import WordsOnlySpaCyTokenizer
from fineforge.tasks.filter.config import (
    ExtractionSettings,
    FilterConfig,
    build_filter_steps,
    language_model_path,
)
from fineforge.tasks.filter.extraction import MainTextExtractor
from fineforge.tasks.filter.gopher_repetition import FastGopherRepetitionFilter
from fineforge.tasks.filter.warc_records import iter_html_documents

# Generous per-document extraction timeout: a loaded test machine must not turn into dropped documents.
TEST_EXTRACTION = {"timeout": 30}


def _html_documents(shared_data, name: str, limit: int | None = None) -> list[Document]:
    return list(islice(iter_html_documents(str(shared_data / "warc" / name), Counter()), limit))


@pytest.fixture(scope="module")
def extracted_pages(shared_data) -> list[Document]:
    """Real pages (English from wget, mostly German from the trafilatura set) extracted by trafilatura."""
    config = FilterConfig(extraction=TEST_EXTRACTION)
    (extract,) = [s for s in build_filter_steps(config) if isinstance(s, MainTextExtractor)]
    documents = _html_documents(shared_data, "wget-2024-sample-0000.warc.gz") + _html_documents(
        shared_data, "bench-990-pages.warc.gz", limit=25
    )
    return list(extract(documents))


def test_defaults_are_finewebs_settings_but_the_measured_extraction():
    steps = build_filter_steps(FilterConfig())
    assert [type(s) for s in steps] == [
        URLFilter,
        MainTextExtractor,
        LanguageFilter,
        FastGopherRepetitionFilter,
        GopherQualityFilter,
        C4QualityFilter,
        FineWebQualityFilter,
    ]
    assert issubclass(FastGopherRepetitionFilter, GopherRepetitionFilter)
    url, extract, language, rep, quality, c4, fineweb = steps
    assert extract.method == "trafilatura-resiliparse" and extract.fallbacks and extract.timeout == 1.0
    assert language.languages == ["en"] and language.language_threshold == 0.65
    assert c4.filter_no_terminal_punct is False
    assert fineweb.char_duplicates_ratio == 0.01
    assert rep.dup_line_frac == 0.3 and rep.top_n_grams[0] == (2, 0.2) and rep.dup_n_grams[-1] == (10, 0.1)
    assert quality.min_doc_words == 50 and quality.min_stop_words == 2
    assert [step_name(s) for s in steps] == ["url", "extraction", "language", "gopher_rep", "gopher_qual", "c4",
                                             "fineweb_qual"]  # fmt: skip


def test_finewebs_extraction_is_one_setting_away():
    config = FilterConfig(extraction={"method": "fineweb"})
    (reference,) = [s for s in build_filter_steps(config, reference=True) if isinstance(s, Trafilatura)]
    assert reference.favour_precision and reference.deduplicate and reference.kwargs == {}
    (ours,) = [s for s in build_filter_steps(config) if isinstance(s, MainTextExtractor)]
    assert ours.method == "fineweb"
    assert ExtractionSettings().model_dump().keys() == {"enabled", "method", "fallbacks", "deduplicate", "timeout"}


def test_nothing_is_fetched_from_the_network():
    url, _, language, *_ = build_filter_steps(FilterConfig())
    assert language_model_path(FilterConfig().language).name == "lid.176.ftz"
    assert language.model.model_path.parent.name == "resources"
    assert language.model.model.predict("the cat sat on the mat")[0][0] == "__label__en"
    assert url.tldextractor.suffix_list_urls == ()
    assert url.tldextractor("https://news.bbc.co.uk/x").top_domain_under_public_suffix == "bbc.co.uk"


def test_every_step_can_be_switched_off_and_retuned():
    off = {"enabled": False}
    config = FilterConfig(
        url_filter=off, extraction=off, language=off, gopher_repetition=off, gopher_quality=off,
        c4_quality=off, fineweb_quality={"char_duplicates_ratio": 0.1},
    )  # fmt: skip
    (fineweb,) = build_filter_steps(config)
    assert isinstance(fineweb, FineWebQualityFilter) and fineweb.char_duplicates_ratio == 0.1


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"language": {"threshold": 1.5}}, "language.threshold"),
        ({"language": {"languages": []}}, "language.languages"),
        ({"gopher_quality": {"min_doc_word": 3}}, "gopher_quality.min_doc_word"),
        ({"fineweb_quality": {"char_duplicates_ratio": -0.1}}, "fineweb_quality.char_duplicates_ratio"),
        ({"extraction": {"timeout": 0}}, "extraction.timeout"),
        ({"extraction": {"method": "readability"}}, "extraction.method"),
        ({"extraction": {"favour_precision": True}}, "extraction.favour_precision"),
        ({"language": {"languages": ["en", "xx", "english"]}}, "languages ['english', 'xx'] are not labels of"),
        ({"pii": {"enabled": False}}, "pii"),  # the scrub's settings live in ScrubConfig now
    ],
)
def test_invalid_settings_name_the_field(settings, field):
    with pytest.raises(ValidationError) as error:
        FilterConfig(**settings)
    assert field in str(error.value)


def test_missing_language_model_is_named(tmp_path):
    with pytest.raises(ValidationError, match="language.model_path: fastText model not found"):
        FilterConfig(language={"model_path": tmp_path / "missing.ftz"})
    FilterConfig(language={"model_path": tmp_path / "missing.ftz", "enabled": False})  # not needed when off


def test_steps_on_real_pages_keep_english_prose_and_count_every_drop(extracted_pages):
    steps = build_filter_steps(FilterConfig(extraction=TEST_EXTRACTION))[2:]  # from language ID on
    kept = list(run_steps(steps, copy.deepcopy(extracted_pages)))
    assert kept, "real English pages must survive the FineWeb filters"
    assert len(kept) < len(extracted_pages)
    for document in kept:
        assert document.metadata["language"] == "en" and document.metadata["language_score"] > 0.65
        assert len(document.text.split()) >= 50
    statistics = pipeline_statistics(steps)
    assert statistics[0]["documents_in"] == len(extracted_pages)
    assert statistics[-1]["documents_out"] == len(kept)
    for step in statistics:
        dropped = sum(v for k, v in step.items() if k.startswith("dropped_"))
        assert step["documents_in"] - dropped == step["documents_out"], step
    language = statistics[0]
    assert language["dropped_below_threshold"] > 0  # the German pages


def test_languages_null_keeps_every_language(extracted_pages):
    german = [copy.deepcopy(d) for d in extracted_pages if "bench-990" in d.metadata["warc_file"]]
    english_only = build_filter_steps(FilterConfig())[2]
    any_language = build_filter_steps(FilterConfig(language={"languages": None}))[2]
    kept_any = [d.metadata["language"] for d in german if any_language.filter(d)]
    kept_en = [d.metadata["language"] for d in german if english_only.filter(d)]
    assert "de" in kept_any and "de" not in kept_en
    assert set(kept_en) <= {"en"}


def test_shared_word_tokenizer_matches_datatrove(extracted_pages):
    fast = WordsOnlySpaCyTokenizer("en")
    reference = load_word_tokenizer("en")
    texts = [d.text for d in extracted_pages] + ["IS_ALPHA breaks spaCy's IS_ALPHA matcher", "  a\n\nb  c ", ""]
    for text in texts:
        assert fast.word_tokenize(text) == reference.word_tokenize(text)
