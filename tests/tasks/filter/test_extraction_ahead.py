"""Look-ahead extraction gives datatrove's own Trafilatura output and statistics, on real pages."""

from __future__ import annotations

import copy
from collections import Counter
from itertools import islice

from datatrove.pipeline.extractors import Trafilatura

from fineforge.tasks.common.datatrove_steps import step_statistics
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
