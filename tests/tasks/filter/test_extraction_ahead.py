"""Look-ahead extraction gives datatrove's own Trafilatura output and statistics, on real pages; CPU budget."""

from __future__ import annotations

import copy
import re
from collections import Counter
from itertools import islice

from datatrove.pipeline.extractors import Trafilatura

from fineforge.tasks.common.datatrove_steps import step_statistics
from fineforge.tasks.filter.extraction import MainTextExtractor
from fineforge.tasks.filter.extraction_ahead import run_extractor_ahead
from fineforge.tasks.filter.warc_records import iter_html_documents


def test_same_documents_text_and_stats_as_datatrove(shared_data):
    # Pages of few hosts, in file order: trafilatura's cross-document deduplication is exercised.
    uri = str(shared_data / "warc" / "archive-it-2008-example.warc.gz")
    documents = list(islice(iter_html_documents(uri, Counter()), 60))
    reference, ahead = Trafilatura(favour_precision=True, timeout=60), Trafilatura(favour_precision=True, timeout=60)
    expected = [(d.id, d.text) for d in reference.run(copy.deepcopy(documents))]
    got = [(d.id, d.text) for d in run_extractor_ahead(ahead, copy.deepcopy(documents), ahead=8)]
    assert got == expected and len(got) > 10
    assert step_statistics(ahead, "trafilatura") == step_statistics(reference, "trafilatura")


def test_too_slow_documents_are_dropped_as_timeouts(shared_data):
    uri = str(shared_data / "warc" / "wget-2024-sample-0000.warc.gz")
    documents = list(islice(iter_html_documents(uri, Counter()), 4))
    step = Trafilatura(favour_precision=True, timeout=1e-6)
    assert list(run_extractor_ahead(step, documents, ahead=3)) == []
    stats = step_statistics(step, "trafilatura")
    assert stats["documents_in"] == 4 and stats["dropped_timeout"] == 4 and stats["documents_out"] == 0


def test_cpu_budget_drops_only_the_page_that_needs_more_and_extraction_goes_on(shared_data):
    pages = list(islice(iter_html_documents(str(shared_data / "warc" / "wget-2024-sample-0000.warc.gz"), Counter()), 6))
    bench = list(islice(iter_html_documents(str(shared_data / "warc" / "bench-990-pages.warc.gz"), Counter()), 60))
    # one page holding the bodies of 60 real pages: about 1 s of CPU, where each of the others needs < 0.1 s
    body = "".join(re.sub(r"(?is)<head.*?</head>|</?(?:html|body|!doctype)[^>]*>", "", page.text) for page in bench)
    giant = copy.deepcopy(pages[0])
    giant.id, giant.text = "giant", f"<html><body>{body}</body></html>"
    documents = [*pages[:3], giant, *pages[3:]]
    step = MainTextExtractor("trafilatura", timeout=0.4)
    got = [d.id for d in run_extractor_ahead(step, copy.deepcopy(documents), ahead=4)]
    expected = [d.id for d in MainTextExtractor("trafilatura", timeout=60).run(copy.deepcopy(pages))]
    assert got == expected and len(got) >= 3
    stats = step_statistics(step, "extraction")
    assert stats["dropped_timeout"] == 1 and stats["documents_in"] == len(documents)
    timing = step.cpu_time_histogram.summary()
    assert timing["pages"] == len(documents) and timing["p99_ms"] >= 400 > timing["p50_ms"]
