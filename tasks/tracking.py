"""MLflow for the tasks layer, in one place: the tracking URI, and the run that records a data build (config as
params, statistics as metrics, stats.json files as artifacts). Training runs are kept by the trainer itself
(`model/tracking.py`), which runs on machines without this layer.

MLflow is reached through an explicit tracking URI only (never a global default), so a test or a user
choosing a store in one place cannot leak into another.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from fineforge.model.shards import MANIFEST
from fineforge.model.tracking import experiment_id
from fineforge.tasks.common.stage import STATS_FILE
from fineforge.tasks.common.statistics import stats_rows

log = logging.getLogger(__name__)

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
MLFLOW_DB = "mlflow.db"
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
DIGEST_CHARS = 32  # a dataset digest: MLflow stores at most 36 characters


def tracking_uri(workdir: Path, configured: str | None = None) -> str:
    """The configured URI, else $MLFLOW_TRACKING_URI, else the embedded default: a SQLite file in the work dir."""
    if configured:
        return configured
    if os.environ.get(TRACKING_URI_ENV):
        return os.environ[TRACKING_URI_ENV]
    return f"sqlite:///{(Path(workdir) / MLFLOW_DB).resolve()}"


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def open_run(uri: str, experiment: str, run_name: str) -> str:
    """Create a run (and its experiment when new) at `uri`; return its id."""
    client = _client(uri)
    run = client.create_run(experiment_id(client, experiment, uri), run_name=run_name)
    log.info("MLflow run %s in experiment %s at %s", run.info.run_id, experiment, uri)
    return run.info.run_id


def metric_name(*parts: str) -> str:
    """MLflow metric names allow only alphanumerics, _ - . / and space."""
    return "/".join(re.sub(r"[^\w\-. /]", "_", p) for p in parts if p)


def stage_metrics(statistics: Mapping[str, Any]) -> dict[str, float]:
    """A stage's numeric statistics as metrics named `<dump>/<stage>/<step>/<metric>`."""
    metrics = {}
    for row in stats_rows(statistics):
        if isinstance(row["value"], int | float):
            metrics[metric_name(row["dump"], row["stage"], row["step"], row["metric"])] = float(row["value"])
    return metrics


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> flat MLflow params (`filters.language.languages` = "['en']"), values cut to MLflow's limit."""
    params: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            params.update(flatten_params(value, f"{name}."))
        else:
            params[name] = str(value)[:MAX_PARAM_CHARS]
    return params


def record_stages(uri: str, experiment: str, run_name: str, config: Mapping[str, Any],
                  statistics: list[Mapping[str, Any]], files: list[Path]) -> str:
    """One finished run holding the config as params, every stage's statistics as metrics and `files` as artifacts
    (under `<group>/<stage>/`, the two folders above each file)."""
    from mlflow.entities import Metric, Param

    run_id = open_run(uri, experiment, run_name)
    client = _client(uri)
    now = int(time.time() * 1000)
    metrics = {name: value for stats in statistics for name, value in stage_metrics(stats).items()}
    client.log_batch(
        run_id,
        metrics=[Metric(name, value, now, 0) for name, value in metrics.items()],
        params=[Param(name, value) for name, value in flatten_params(config).items()],
    )
    for path in map(Path, files):
        if path.is_file():
            client.log_artifact(run_id, str(path), artifact_path=f"{path.parent.parent.name}/{path.parent.name}")
    client.set_terminated(run_id, status="FINISHED")
    return run_id


@task(name="track-in-mlflow", cache_policy=NO_CACHE)
def track_stages(uri: str, experiment: str, run_name: str, config: dict, statistics: list[dict],
                 files: list[Path]) -> str:
    """Prefect task: record stages (a data build) as one MLflow run; return its id."""
    return record_stages(uri, experiment, run_name, config, statistics, files)


def tag_run(uri: str, run_id: str, tags: Mapping[str, str]) -> None:
    """Set `tags` on a run (kept apart from the run's creation: a trainer's run is made in another process)."""
    from mlflow.entities import RunTag

    _client(uri).log_batch(run_id, tags=[RunTag(name, str(value)) for name, value in tags.items()])


def token_dataset(data_dir: Path, statistics: Mapping[str, Any] | None = None):
    """The token shards in `data_dir` as an MLflow dataset entity: source the folder, digest the manifest's sha256,
    profile the tokens per split, the tokenizer and, from the tokens stage's statistics, the corpus it read."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset

    data_dir = Path(data_dir).resolve()
    manifest_bytes = (data_dir / MANIFEST).read_bytes()
    manifest = json.loads(manifest_bytes)
    digest = hashlib.sha256(manifest_bytes).hexdigest()[:DIGEST_CHARS]
    meta = MetaDataset(resolve_dataset_source(str(data_dir)), name=data_dir.name, digest=digest).to_dict()
    profile = {"tokens": manifest["tokens"], "tokenizer": manifest["tokenizer"], "vocab_size": manifest["vocab_size"],
               "corpus": (statistics or {}).get("corpus", {}), "fingerprint": (statistics or {}).get("fingerprint")}
    return Dataset(name=meta["name"], digest=meta["digest"], source_type=meta["source_type"], source=meta["source"],
                   profile=json.dumps(profile))


def log_token_dataset(uri: str, run_id: str, data_dir: Path, context: str = "train") -> None:
    """Log the token shards a training run read as its input (`mlflow.data`), and their manifest as an artifact."""
    from mlflow.entities import DatasetInput, InputTag

    stats_path = Path(data_dir) / STATS_FILE
    statistics = json.loads(stats_path.read_text()) if stats_path.is_file() else None
    client = _client(uri)
    dataset = DatasetInput(token_dataset(data_dir, statistics), [InputTag("mlflow.data.context", context)])
    client.log_inputs(run_id, datasets=[dataset])
    client.log_artifact(run_id, str(Path(data_dir) / MANIFEST), artifact_path="data")


def register_checkpoint(uri: str, run_id: str, model_name: str, alias: str, artifact_path: str = "checkpoint") -> str:
    """Register the checkpoint logged under `artifact_path` of a run as a new version of `model_name`, pointed at by
    `alias` (e.g. `fineforge@latest-pretrain`); return the version."""
    from mlflow.exceptions import MlflowException

    client = _client(uri)
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        client.create_registered_model(model_name)
    source = f"{client.get_run(run_id).info.artifact_uri}/{artifact_path}"
    version = client.create_model_version(model_name, source, run_id=run_id).version
    client.set_registered_model_alias(model_name, alias, version)
    log.info("registered %s version %s (@%s) from run %s", model_name, version, alias, run_id)
    return str(version)


def find_run(uri: str, experiment: str, tag: str, value: str) -> str | None:
    """The id of the newest run of `experiment` whose tag `tag` is `value`, or None."""
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs([found.experiment_id], filter_string=f"tags.`{tag}` = '{value}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def experiment_of(uri: str, run_id: str) -> str:
    """The id of the experiment a run belongs to."""
    return _client(uri).get_run(run_id).info.experiment_id


def close_run(uri: str, run_id: str, status: str, config: Mapping[str, Any] | None = None,
              texts: Mapping[str, str] | None = None) -> None:
    """End a run with `status`, after logging `config` (as params and config.json) and `texts` as artifact files."""
    from mlflow.entities import Param

    client = _client(uri)
    if config is not None:
        client.log_batch(run_id, params=[Param(k, v) for k, v in flatten_params(config).items()])
        client.log_dict(run_id, dict(config), "config.json")
    for name, text in (texts or {}).items():
        client.log_text(run_id, text, name)
    client.set_terminated(run_id, status=status)
