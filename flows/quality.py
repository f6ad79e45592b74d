"""The quality classifier's flows: `quality_train` (positives against the build's documents, a fastText model and
its held-out precision/recall) and `quality_score` (every document scored on Spark, those below the threshold
dropped), each with a markdown artifact and an MLflow run."""

import json
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from fineforge.tasks.common.stage import STATS_FILE, StageOutput
from fineforge.tasks.common.stage_task import run_stage
from fineforge.tasks.quality.config import MODEL_FILE, REPORT_FILE, QualityScoreConfig, QualityTrainConfig
from fineforge.tasks.quality.job import EXAMPLES_FILE, QualityTrainStage, score_stages
from fineforge.tasks.quality.report import scoring_markdown, training_markdown
from fineforge.tasks.tracking import track_stages, tracking_uri


def _track(config: QualityTrainConfig | QualityScoreConfig, run_name: str, outputs: list[StageOutput],
           files: list[str]) -> str | None:
    """Record the outputs as one MLflow run (config as params, statistics as metrics, `files` of each output as
    artifacts) when the config asks for it; return the run id."""
    if not config.mlflow:
        return None
    uri = tracking_uri(Path(config.workdir).resolve(), config.mlflow_tracking_uri)
    paths = [output.path / name for output in outputs for name in [STATS_FILE, *files]]
    return track_stages(uri, config.mlflow_experiment, run_name, config.model_dump(mode="json"),
                        [output.statistics for output in outputs], paths)


@flow(name="quality_train", description="Train a fastText quality classifier: reference texts against the build's "
      "documents; report held-out precision and recall.")
def quality_train(config: QualityTrainConfig) -> dict:
    """Train (skipped when the same classifier exists), publish the held-out report, track it in MLflow."""
    output = run_stage(QualityTrainStage(config), Path(config.workdir).resolve())
    report = json.loads((output.path / REPORT_FILE).read_text())
    create_markdown_artifact(training_markdown(config.name, report), key="quality-classifier",
                             description=f"Held-out precision and recall of {output.path}.")
    run_id = _track(config, f"quality_train {config.name}", [output], [MODEL_FILE, REPORT_FILE])
    return {"output": output, "report": report, "mlflow_run_id": run_id}


@flow(name="quality_score", description="Score the build's documents with the quality classifier on Spark; keep "
      "those at or above the threshold, the score as a column.")
def quality_score(config: QualityScoreConfig) -> dict:
    """Score each input stage, publish the effect (kept, histogram, top/bottom examples), track it in MLflow."""
    workdir = Path(config.workdir).resolve()
    outputs = [run_stage(stage, workdir, config.spark) for stage in score_stages(config)]
    examples = [json.loads((output.path / EXAMPLES_FILE).read_text()) for output in outputs]
    markdown = scoring_markdown(config.threshold, [output.statistics for output in outputs], examples)
    create_markdown_artifact(markdown, key="quality-filter",
                             description="Documents kept by the quality classifier, scores, examples.")
    run_name = "quality_score " + ", ".join(output.group for output in outputs)
    run_id = _track(config, run_name, outputs, [EXAMPLES_FILE])
    return {"outputs": outputs, "markdown": markdown, "mlflow_run_id": run_id}
