"""The quality stages' results as markdown (Prefect artifacts): the classifier's held-out precision and recall, and
scoring's effect: documents kept, the score histogram, the highest- and lowest-scored documents."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fineforge.tasks.common.statistics import merge_counts
from fineforge.tasks.quality.scoring import merge_examples

HISTOGRAM_BAR_WIDTH = 40  # characters of the longest histogram bar
EXAMPLE_TABLE_CHARS = 160  # characters of an example's text in a table cell


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _cell(text: Any) -> str:
    """A value as one markdown table cell (no line breaks, no column separators)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def training_markdown(name: str, report: Mapping[str, Any]) -> str:
    """The held-out measurements of a trained classifier: counts, and precision/recall/F1 per threshold."""
    lines = [
        f"# Quality classifier `{name}`",
        "",
        f"Trained on {report['positives_train']} positive and {report['negatives_train']} negative texts; measured "
        f"on {report['positives_held_out']} positive and {report['negatives_held_out']} negative held-out texts.",
        f"At the threshold {report['threshold']}: precision **{_number(report['precision'])}**, recall "
        f"**{_number(report['recall'])}**, F1 **{_number(report['f1'])}** (calling every text positive: F1 "
        f"{_number(report['f1_all_positive'])}).",
        "",
        "| threshold | precision | recall | F1 |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {row['threshold']} | {_number(row['precision'])} | {_number(row['recall'])} | {_number(row['f1'])} |"
              for row in report["by_threshold"]]
    return "\n".join(lines) + "\n"


def histogram_lines(histogram: Mapping[str, int]) -> list[str]:
    """A markdown table of score bins with a bar per bin."""
    largest = max(histogram.values(), default=0) or 1
    lines = ["| score | documents | |", "|---|---:|---|"]
    for score_bin in sorted(histogram):
        count = histogram[score_bin]
        lines.append(f"| {score_bin} | {count} | {'█' * round(HISTOGRAM_BAR_WIDTH * count / largest)} |")
    return lines


def example_lines(examples: Sequence[Mapping[str, Any]]) -> list[str]:
    """A markdown table of scored documents: score, kept or dropped, URL, the start of the text."""
    lines = ["| score | kept | url | text |", "|---:|---|---|---|"]
    lines += [f"| {example['score']:.3f} | {'yes' if example['kept'] else 'no'} | {_cell(example['url'] or '')} | "
              f"{_cell(example['text'][:EXAMPLE_TABLE_CHARS])} |" for example in examples]
    return lines


def scoring_markdown(threshold: float, statistics: Sequence[Mapping[str, Any]],
                     examples: Sequence[Mapping[str, list]]) -> str:
    """Scoring's effect over all its inputs: kept and dropped per dump, the score histogram, top/bottom examples."""
    lines = [f"# Quality filter at threshold {threshold}", "", "| dump | documents | kept | dropped | kept share |",
             "|---|---:|---:|---:|---:|"]
    for stats in statistics:
        documents, kept = stats["documents_in"], stats["documents_out"]
        share = f"{kept / documents:.1%}" if documents else "n/a"
        lines.append(f"| {stats['dump']} | {documents} | {kept} | {documents - kept} | {share} |")
    lines += ["", "## Scores", "", *histogram_lines(merge_counts(s.get("score_histogram", {}) for s in statistics))]
    shown = merge_examples(list(examples), max((len(part["top"]) for part in examples), default=0))
    lines += ["", "## Highest scores", "", *example_lines(shown["top"]), "", "## Lowest scores", "",
              *example_lines(shown["bottom"])]
    return "\n".join(lines) + "\n"
