"""The pipeline's report card: one markdown page with what a run made and what it cost, like nanochat's.

Data statistics per stage, the token shards, the model (parameters, losses, evaluation), the last samples,
every stage's wall and CPU time, and a link to every MLflow run. Pure: it only formats what it is given.
"""

from dataclasses import dataclass, field
from typing import Any

from fineforge.tasks.common.statistics import DROPPED


@dataclass
class StageRecord:
    """One stage of a pipeline run: whether it ran, what it cost and where it is tracked."""

    name: str
    skipped: bool
    wall_seconds: float
    cpu_seconds: float
    mlflow_run: str | None = None  # a link or the run id
    outputs: list[str] = field(default_factory=list)


def run_link(uri: str, experiment_id: str, run_id: str) -> str:
    """A markdown link to the run in the MLflow UI of a tracking server; for a local store, its id and store."""
    if uri.startswith(("http://", "https://")):
        return f"[{run_id}]({uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id})"
    return f"`{run_id}` (`{uri}`)"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def stages_section(stages: list[StageRecord]) -> str:
    rows = [[s.name, "skipped (complete)" if s.skipped else "ran", s.wall_seconds, s.cpu_seconds, s.mlflow_run]
            for s in stages]
    total = [["total", "", sum(s.wall_seconds for s in stages), sum(s.cpu_seconds for s in stages), ""]]
    return "## Stages\n\n" + _table(["stage", "status", "wall time (s)", "cost: CPU time (s)", "MLflow run"],
                                    rows + total)


def data_section(statistics: list[dict]) -> str:
    rows = [[s.get("dump"), s.get("stage"), s.get("documents_in"), s.get("documents_out"),
             sum(s.get(DROPPED, {}).values()), s.get("bytes_out"), s.get("seconds")] for s in statistics]
    header = ["dump", "stage", "documents in", "documents out", "dropped", "bytes out", "seconds"]
    return "## Data\n\n" + _table(header, rows)


def tokens_section(statistics: dict) -> str:
    keys = ("tokenizer", "documents_in", "documents_out", "tokens", "tokens_train", "tokens_val", "shards",
            "bytes_per_token", "tokens_per_second")
    return "## Tokens\n\n" + _table(["", ""], [[key, statistics.get(key)] for key in keys])


def model_section(summary: dict) -> str:
    keys = ("num_parameters", "step", "tokens_per_step", "train_loss", "val_loss", "tokens_per_s", "mfu",
            "checkpoint")
    return "## Model\n\n" + _table(["", ""], [[key, summary.get(key)] for key in keys if key in summary])


def samples_section(samples: str | None) -> str:
    return "## Samples\n\n" + (f"```text\n{samples.strip()}\n```" if samples else "No samples were written.")


def render_report(title: str, stages: list[StageRecord], data: list[dict], tokens: dict, summary: dict,
                  samples: str | None, parent_run: str | None) -> str:
    """The report card as markdown."""
    head = f"# {title}\n\nMLflow pipeline run: {parent_run or '-'}"
    parts = [head, stages_section(stages), data_section(data), tokens_section(tokens), model_section(summary),
             samples_section(samples)]
    return "\n\n".join(parts) + "\n"
