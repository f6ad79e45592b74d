"""What two runs of a data stage are compared by: the documents of its Parquet output and its counts."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

COMPARED_STATS = ("documents_in", "documents_out", "dropped")
# trafilatura's per-document timeout (1 s) drops documents on a loaded machine: builds compared use a long one.
LOAD_INDEPENDENT_FILTERS = {"extraction": {"timeout": 120}}


def stage_output(folder: Path) -> tuple[list[dict], dict]:
    """The stage folder's documents sorted by id, and the counts of its stats.json."""
    rows = pq.read_table(sorted(folder.glob("*.parquet"))).to_pylist()
    stats = json.loads((folder / "stats.json").read_text())
    return sorted(rows, key=lambda row: row["id"]), {key: stats[key] for key in COMPARED_STATS}
