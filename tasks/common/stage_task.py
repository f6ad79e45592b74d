"""The one Prefect task that runs any stage: on the configured Spark session, through the stage contract
(skipped when complete, committed atomically), with Spark's progress in the task's log and the statistics
as a table artifact. Its runs are named after the output folder, e.g. `CC-MAIN-2024-22/filtered`."""

from __future__ import annotations

import re
from pathlib import Path

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from fineforge.tasks.common.increments import execute_incremental
from fineforge.tasks.common.remote_stage import run_in_work_dir
from fineforge.tasks.common.spark import SparkConfig, SparkProgress, spark_session
from fineforge.tasks.common.stage import Stage, StageOutput, execute_stage, is_complete
from fineforge.tasks.common.statistics import stats_rows


def artifact_key(output: StageOutput) -> str:
    """The key of a stage's statistics artifact: `<group>-<name>-stats`, in the characters keys allow."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{output.group}-{output.name}-stats".lower())


@task(name="run-stage", task_run_name="{stage.group}/{stage.name}", cache_policy=NO_CACHE)
def run_stage(stage: Stage, workdir: str | Path, spark: SparkConfig | None = None,
              incremental: bool = False) -> StageOutput:
    """Run `stage` as `<workdir>/<group>/<name>/` (a local folder, or `s3://...`: `remote_stage.py`), on the Spark
    session of `spark` (None: a stage without Spark); return its output. `incremental` (a `ConfiguredStage`):
    append the output of new input files only. A (non-incremental) stage found complete starts no Spark session."""
    execute = execute_incremental if incremental else execute_stage

    def run(local_workdir: Path) -> StageOutput:
        if spark is None or (not incremental and is_complete(stage, local_workdir)):
            return execute(stage, local_workdir)
        session = spark_session(spark)
        with SparkProgress(session, f"{stage.group}/{stage.name}"):
            return execute(stage, local_workdir, session)

    output = run_in_work_dir(run, stage, workdir)
    skipped = " (skipped: already complete)" if output.skipped else ""
    create_table_artifact(stats_rows(output.statistics), key=artifact_key(output),
                          description=f"Statistics of {output.path}{skipped}.")
    return output
