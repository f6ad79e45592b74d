"""The `pipeline` flow: WARC files -> corpus -> token shards -> pretrained model, ending with a report card.

Each stage is its own flow, run as a subflow: `data_build`, `tokenize`, `pretrain`. A stage whose complete
output exists for the same inputs and config is skipped: the data stages by their fingerprints (the stage
contract), the training run when its folder's summary reached max_steps for the same trainer config and token
shards. The pipeline is one MLflow run, the parent of each stage's run (`mlflow.parentRunId`); every run
carries the Prefect flow run's id and URL. The report card (data statistics, tokens, parameters, losses,
samples, wall and CPU time per stage, links to the MLflow runs) is a Prefect markdown artifact, the file
`<workdir>/report.md` and an artifact of the parent MLflow run.
"""

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from fineforge.flows.data_build import data_build
from fineforge.flows.data_build_config import DataBuildConfig
from fineforge.flows.lineage import FLOW_RUN_ID_TAG, PARENT_RUN_TAG, prefect_run_tags
from fineforge.flows.pipeline_config import PipelineConfig
from fineforge.flows.pretrain import pretrain
from fineforge.flows.report_card import StageRecord, render_report, run_link
from fineforge.flows.tokens import MLFLOW_EXPERIMENT as TOKENIZE_EXPERIMENT
from fineforge.flows.tokens import tokenize
from fineforge.model.tracking import recorded_run
from fineforge.tasks.common.object_store import put_file, work_dir
from fineforge.tasks.common.stage import StageOutput
from fineforge.tasks.cpu_time import Usage, measured
from fineforge.tasks.tokens.config import TokenizeConfig
from fineforge.tasks.tracking import close_run, experiment_of, find_run, open_run, tag_run, tracking_uri
from fineforge.tasks.training.completion import claim_run_dir, completed_training, latest_samples, training_inputs

REPORT_FILE = "report.md"
REPORT_ARTIFACT = "pipeline-report"


class Lineage:
    """The pipeline's MLflow run and how its stages' runs are linked to it and to the report card."""

    def __init__(self, uri: str, experiment: str, run_name: str) -> None:
        self.uri = uri
        self.run_id = open_run(uri, experiment, run_name)
        tag_run(uri, self.run_id, prefect_run_tags())

    def link(self, run_id: str | None, child: bool = True) -> str | None:
        """Make `run_id` a child of the pipeline's run (unless it is an earlier run found complete); its link."""
        if run_id is None:
            return None
        if child:
            tag_run(self.uri, run_id, {PARENT_RUN_TAG: self.run_id})
        return self.describe(run_id)

    def describe(self, run_id: str) -> str:
        return run_link(self.uri, experiment_of(self.uri, run_id), run_id)


def run_subflow(subflow: Callable, *args: Any, **kwargs: Any) -> tuple[Any, Usage, str]:
    """Run a flow as a subflow; its result, its wall and CPU time, and its flow run's id."""
    with measured() as usage:
        state = subflow(*args, return_state=True, **kwargs)
    return state.result(), usage, str(state.state_details.flow_run_id)


def build_data(config: PipelineConfig, lineage: Lineage) -> tuple[dict, StageRecord]:
    """The data build subflow; its result and record (skipped when every stage was found complete)."""
    values = {**config.data_build.model_dump(mode="json"), "mlflow_tracking_uri": lineage.uri}
    built, usage, _ = run_subflow(data_build, DataBuildConfig.model_validate(values))
    skipped = all(output.skipped for output in built["stages"])
    return built, StageRecord("data_build", skipped, usage.wall_seconds, usage.cpu_seconds,
                              lineage.link(built["mlflow_run_id"]), list(built["outputs"].values()))


def tokenize_corpus(config: PipelineConfig, corpus: list[str], lineage: Lineage) -> tuple[StageOutput, StageRecord]:
    """The tokenize subflow on the data build's output; its output and record."""
    values = {**config.tokenize.model_dump(mode="json"), "input": corpus}
    tokens, usage, flow_run_id = run_subflow(tokenize, TokenizeConfig.model_validate(values), lineage.uri)
    run_id = find_run(lineage.uri, TOKENIZE_EXPERIMENT, FLOW_RUN_ID_TAG, flow_run_id)
    return tokens, StageRecord("tokenize", tokens.skipped, usage.wall_seconds, usage.cpu_seconds,
                               lineage.link(run_id), [str(tokens.path)])


def train_model(config: PipelineConfig, tokens: StageOutput, lineage: Lineage) -> tuple[dict, StageRecord]:
    """The pretrain subflow on the token shards, unless its run folder holds the same run complete."""
    flow_config = config.pretrain_flow_config(tokens.path, lineage.uri)  # every launch check, with the shards
    run_dir = Path(flow_config.train.run_dir)  # local (an object store's run folder: its staging copy)
    inputs = training_inputs(asdict(flow_config.train), tokens.fingerprint)
    summary = completed_training(run_dir, inputs)
    if summary is not None:
        record = recorded_run(run_dir)
        link = lineage.link(record["run_id"] if record else None, child=False)
        return summary, StageRecord("pretrain", True, 0.0, 0.0, link, [str(run_dir)])
    claim_run_dir(run_dir, inputs)
    summary, usage, _ = run_subflow(pretrain, flow_config)
    return summary, StageRecord("pretrain", False, usage.wall_seconds, usage.cpu_seconds,
                                lineage.link(summary.get("mlflow_run_id")), [str(run_dir)])


def publish_report(config: PipelineConfig, lineage: Lineage, report: str) -> Path:
    """The report card as a Prefect artifact, `<workdir>/report.md` (in an object store too) and an artifact of the
    pipeline's run."""
    workdir = work_dir(config.workdir)
    path = workdir.local / REPORT_FILE
    path.write_text(report)
    if workdir.remote:
        put_file(path, workdir.uri_of(REPORT_FILE))
    create_markdown_artifact(report, key=REPORT_ARTIFACT, description="The pipeline's report card.")
    return path


@flow(name="pipeline", description="From WARC files to a pretrained model: data build, tokenize, pretrain (each "
      "skipped when complete), then a report card.")
def pipeline(config: PipelineConfig) -> dict:
    """Run the stages in order as subflows; publish the report card; return what each stage made."""
    workdir = work_dir(config.workdir)
    workdir.local.mkdir(parents=True, exist_ok=True)
    lineage = Lineage(tracking_uri(workdir.local, config.mlflow_tracking_uri), config.mlflow_experiment,
                      f"pipeline {workdir.local.name}")
    try:
        built, data_record = build_data(config, lineage)
        tokens, tokens_record = tokenize_corpus(config, data_record.outputs, lineage)
        summary, train_record = train_model(config, tokens, lineage)
        stages = [data_record, tokens_record, train_record]
        report = render_report(f"fineforge pipeline: {workdir.uri}", stages, [o.statistics for o in built["stages"]],
                               tokens.statistics, summary, latest_samples(train_record.outputs[0]),
                               lineage.describe(lineage.run_id))
        path = publish_report(config, lineage, report)
    except BaseException:
        close_run(lineage.uri, lineage.run_id, "FAILED")
        raise
    close_run(lineage.uri, lineage.run_id, "FINISHED", config=config.model_dump(mode="json"),
              texts={REPORT_FILE: report})
    return {"report": str(path), "mlflow_run_id": lineage.run_id, "summary": summary,
            "stages": [asdict(stage) for stage in stages]}
