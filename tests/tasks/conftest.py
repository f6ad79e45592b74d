"""Fixtures shared by the stage tests: the filter stage's output on real WARCs (also the scrub stage's input)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from fineforge.tasks.filter.config import FilterConfig
from fineforge.tasks.filter.job import filter_warcs_to_parquet

SAMPLES = ["wget-2024-sample-0000.warc.gz", "wget-2024-sample-0001.warc.gz"]
BROKEN = ["warcio-example-trunc.warc", "warcio-example-bad.warc.gz.bad"]  # in warc/broken/


@dataclass(frozen=True)
class Filtered:
    uris: list[str]
    folder: Path
    stats: dict
    config: FilterConfig
    dump: str


@pytest.fixture(scope="session")
def filtered(spark, shared_data, tmp_path_factory) -> Filtered:
    """Two real WARCs and two damaged ones through the filter stage's Spark job."""
    warcs = shared_data / "warc"
    uris = [str(warcs / name) for name in SAMPLES] + [str(warcs / "broken" / name) for name in BROKEN]
    config, dump = FilterConfig(extraction={"timeout": 30}), "CC-MAIN-TEST"
    output = tmp_path_factory.mktemp("stage") / "filtered"
    return Filtered(uris, output, filter_warcs_to_parquet(spark, uris, config, output, dump), config, dump)
