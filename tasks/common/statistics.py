"""A stage's statistics: merging the per-file (or per-partition) counts, and flattening them into table rows.

Statistics are plain JSON-able dicts: numbers (documents_in, documents_out, bytes_out, ...), {name: count}
dicts (dropped by reason, reader counts) and "steps", a list of {"name", ...counts} in pipeline order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

STEPS, DROPPED = "steps", "dropped"
# Counts every document stage reports, zero when it read nothing.
STAGE_COUNTS = ("documents_in", "documents_out", "bytes_out")


def merge_counts(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Sum several {name: count} mappings."""
    total: dict[str, int] = {}
    for one in counts:
        for key, value in one.items():
            total[key] = total.get(key, 0) + value
    return total


def merge_step_statistics(per_task: Iterable[list[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Sum the per-step statistics of several tasks, keeping pipeline order."""
    order: list[str] = []
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for steps in per_task:
        for step in steps:
            if step["name"] not in grouped:
                order.append(step["name"])
                grouped[step["name"]] = []
            grouped[step["name"]].append({key: value for key, value in step.items() if key != "name"})
    return [{"name": name, **merge_counts(grouped[name])} for name in order]


def merge_statistics(per_part: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The statistics of a whole stage from those of its parts: numbers add up, {name: count} dicts merge,
    "steps" merge step by step. A stage without parts has 0 documents in and out, 0 bytes and no drops."""
    merged: dict[str, Any] = {**dict.fromkeys(STAGE_COUNTS, 0), DROPPED: {}}
    keys = dict.fromkeys(key for part in per_part for key in part)
    for key in keys:
        values = [part[key] for part in per_part if key in part]
        if key == STEPS:
            merged[key] = merge_step_statistics(values)
        elif isinstance(values[0], Mapping):
            merged[key] = merge_counts(values)
        else:
            merged[key] = sum(values)
    return merged


def stats_rows(stats: Mapping[str, Any]) -> list[dict]:
    """Flatten a stage's stats into table rows (dump, stage, step, metric, value) for artifacts and MLflow."""
    where = {"dump": stats.get("dump", ""), "stage": stats.get("stage", "")}
    rows = [
        {**where, "step": "", "metric": key, "value": value}
        for key, value in sorted(stats.items())
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    for step in stats.get(STEPS, []):
        rows += [{**where, "step": step["name"], "metric": k, "value": v} for k, v in step.items() if k != "name"]
    for reason, value in sorted(stats.get(DROPPED, {}).items()):
        rows.append({**where, "step": "", "metric": f"dropped/{reason}", "value": value})
    return rows
