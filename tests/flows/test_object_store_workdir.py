"""An object store as the work dir, end to end: `fineforge pipeline run --workdir s3://...` (its own process) on a
real S3 server on loopback (moto's server mode). Then a second run from another (empty) staging copy, as on another
machine: the data stages and tokenize are skipped from their commits, and the training resumes from the checkpoint
in the store. (That the committed stages and shards equal a local build's is checked in test_distributed.py.)"""

import json
import re
import shutil
from pathlib import Path

import pytest

from fineforge.tasks.common.committed import COMMIT_FILE, read_commit
from fineforge.tasks.common.object_store import split_uri
from testkit.s3_store import s3_store
from testkit.services import fineforge

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PRESET = ROOT / "configs" / "pipeline-tiny.json"
WARCS = "wget-2024-sample-0000.warc.gz"  # one WARC: the smallest input that still trains a few steps
DUMP = "tiny"
DATA_STAGES = ("filtered", "deduplicated", "scrubbed")


def pipeline_run(shared_data: Path, workdir: str, env: dict, *settings: str):
    options = [option for setting in settings for option in ("--set", setting)]
    result = fineforge("pipeline", "run", "--config", str(PRESET), "--input", str(shared_data / "warc" / WARCS),
                       "--workdir", workdir, *options, env={**env, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def runs(shared_data, tmp_path_factory):
    """Two pipeline runs into S3 (the second from a new staging copy, 2 more steps)."""
    root = tmp_path_factory.mktemp("object-store")
    with s3_store(root / "s3") as store, pytest.MonkeyPatch.context() as patch:
        workdir = store.make_bucket("fineforge") + "/work"
        for name, value in store.env(root / "pull").items():
            patch.setenv(name, value)
        first = pipeline_run(shared_data, workdir, store.env(root / "staging-1"))
        second = pipeline_run(shared_data, workdir, store.env(root / "staging-2"), "pretrain.train.max_steps=12")
        yield {"store": store, "workdir": workdir, "root": root, "outputs": [first, second],
               "keys": store.keys(*split_uri(workdir))}


def test_checkpoints_and_the_run_land_in_the_store(runs):
    prefix = "work/runs/pretrain/"
    keys = [key[len(prefix):] for key in runs["keys"] if key.startswith(prefix)]
    checkpoints = sorted(key.split("/")[1] for key in keys if re.fullmatch(r"checkpoints/step_\d+/meta\.json", key))
    assert checkpoints == ["step_00000010", "step_00000012"]  # keep_checkpoints=2: step 5 was pruned in the store
    for name in checkpoints:
        assert {"model.safetensors", "optimizer.safetensors", "rng_rank0.json"} <= {
            key.rsplit("/", 1)[1] for key in keys if key.startswith(f"checkpoints/{name}/")}
    store = runs["store"]
    summary = store.client().get_object(Bucket="fineforge", Key=prefix + "summary.json")["Body"].read()
    assert json.loads(summary)["step"] == 12
    assert "work/report.md" in runs["keys"]


def test_a_second_run_elsewhere_skips_the_committed_stages_and_resumes_from_the_stored_checkpoint(runs):
    first, second = runs["outputs"]
    assert re.search(r"data_build\s+│\s+ran", first) and re.search(r"tokenize\s+│\s+ran", first)
    assert re.search(r"data_build\s+│\s+skipped", second) and re.search(r"tokenize\s+│\s+skipped", second)
    assert re.search(r"pretrain\s+│\s+ran", second)
    assert re.search(r"resumed from \S+step_00000010 at step 10", second)
    for stage in (*DATA_STAGES, "tokens"):
        group = "tokens" if stage == "tokens" else DUMP
        name = DUMP if stage == "tokens" else stage
        attempts = {key.split("/")[3] for key in runs["keys"] if key.startswith(f"work/{group}/{name}/attempt-")}
        assert len(attempts) == 1  # the skipped second run published nothing new
        assert read_commit(f"{runs['workdir']}/{group}/{name}")["attempt"] == attempts.pop().removeprefix("attempt-")
    assert f"work/{DUMP}/filtered/{COMMIT_FILE}" in runs["keys"]


@pytest.fixture(autouse=True, scope="module")
def _clean_staging(runs):
    yield
    shutil.rmtree(runs["root"], ignore_errors=True)
