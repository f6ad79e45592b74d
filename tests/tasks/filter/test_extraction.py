"""Extraction methods and their evaluation on the real labelled pages of trafilatura's evaluation set."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.tasks.filter.extraction import (
    COMBINED_METHOD,
    EXTRACTION_METHODS,
    CpuTimeHistogram,
    extract_main_text,
    resiliparse_text,
    trafilatura_text,
)
from fineforge.tasks.filter.extraction_eval import (
    evaluate,
    in_split,
    load_labelled_pages,
    page_scores,
    results_table,
    total,
)

PAGES = 40  # the first labelled pages of the bench WARC: every method runs on them in seconds


@pytest.fixture(scope="module")
def labelled(shared_data):
    warc, labels = shared_data / "warc" / "bench-990-pages.warc.gz", shared_data / "html" / "trafilatura-evaldata.json"
    pages, missing = load_labelled_pages(warc, labels)
    return pages, missing, warc, labels


def test_labelled_pages_come_through_the_stage_reader(labelled):
    pages, missing, _, _ = labelled
    # 990 labelled URLs: 37 records have non-HTTP target URIs (skipped as non_http), 2 are undecodable,
    # 1 URL has a space warcio rewrites
    assert len(pages) == 950 and missing == 40
    assert all(page.must and "<" in page.html for page in pages)


def test_snippets_are_scored_as_in_trafilaturas_evaluation(labelled):
    page = labelled[0][0]
    perfect = page_scores("\n".join(page.must), page)
    assert (perfect.true_positives, perfect.false_negatives, perfect.false_positives) == (len(page.must), 0, 0)
    everything = page_scores(" ".join(page.must + page.must_not), page)
    assert everything.false_positives == len(page.must_not) and everything.recall == 1.0
    nothing = page_scores(None, page)
    assert nothing.true_positives == 0 and nothing.true_negatives == len(page.must_not)
    assert total([perfect, nothing]).recall == 0.5


def test_every_method_extracts_the_main_text_better_than_the_whole_page(labelled):
    pages = labelled[0][:PAGES]
    results = {method: evaluate(pages, method)["all"] for method in EXTRACTION_METHODS}
    for method, result in results.items():
        assert result.scores.f1 > 0.75 and result.pages == PAGES, method
        assert result.cpu_ms_per_page > 0
    # main-content extraction drops boilerplate that the whole page holds
    whole = total([page_scores(page.html, page) for page in pages])
    assert all(r.scores.precision > whole.precision for r in results.values())
    rows = results_table(list(results.values()))
    assert rows[0][-1] == "cost / fineweb" and {row[-1] for row in rows[1:] if row[0] == "fineweb"} == {"1.00"}


def test_the_combination_is_trafilatura_where_it_finds_text_else_resiliparse(labelled):
    for page in labelled[0][:PAGES]:
        trafilatura = trafilatura_text(page.html, "trafilatura", fallbacks=True, deduplicate=False)
        combined = extract_main_text(page.html, COMBINED_METHOD, deduplicate=False)
        assert combined == (trafilatura or resiliparse_text(page.html))


def test_splits_are_stable_and_disjoint(labelled):
    urls = [page.url for page in labelled[0]]
    held_out = [u for u in urls if in_split(u, "held-out")]
    assert 0.15 < len(held_out) / len(urls) < 0.25
    assert not any(in_split(u, "tune") for u in held_out) and all(in_split(u, "all") for u in urls)
    with pytest.raises(ValueError, match="split"):
        in_split(urls[0], "test")


def test_cpu_time_histogram_merges_and_gives_percentiles():
    histogram = CpuTimeHistogram()
    for milliseconds in [1] * 98 + [100, 1000]:
        histogram.add(milliseconds / 1000)
    summary = histogram.summary()
    assert summary["pages"] == 100 and summary["p50_ms"] == pytest.approx(1, rel=0.2)
    assert summary["p99_ms"] == pytest.approx(100, rel=0.2)
    merged = CpuTimeHistogram(summary["histogram"])
    assert merged.summary() == summary


def test_eval_extraction_command_prints_the_table(labelled):
    _, _, warc, labels = labelled
    runner = CliRunner(env={"COLUMNS": "200"})  # a wide table: no cell is wrapped
    result = runner.invoke(app, ["data", "eval-extraction", "--warc", str(warc), "--labels", str(labels),
                                 "--method", "resiliparse", "--split", "held-out"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "resiliparse" in result.output and "held-out" in result.output and "F1" in result.output
    wrong = runner.invoke(app, ["data", "eval-extraction", "--warc", str(warc), "--labels", str(labels),
                                "--method", "boilerpipe"])  # fmt: skip
    assert wrong.exit_code != 0 and "--method" in wrong.output


def test_each_method_is_scored_as_a_fresh_extraction_process(labelled):
    pages = labelled[0][:PAGES]
    first = evaluate(pages, "trafilatura")["all"].scores
    evaluate(pages, "fineweb")  # fills trafilatura's deduplication cache with the same pages
    assert evaluate(pages, "trafilatura")["all"].scores == first
