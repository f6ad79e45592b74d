"""A node other than node 0 of a pipeline's multi-node pretraining. Every node runs `fineforge pipeline run` with
the same config and its own `pretrain.launch.node_rank`; node 0 runs the pipeline flow (data build, tokenize, the
pretrain subflow), the others run no flow: each waits until node 0 claims the training run folder (it does so
right before it launches torchrun, after tokenize), then runs this node's torchrun on the config node 0 claimed,
so that every node trains exactly the same run. The folders are shared by all nodes (one work dir; with an
object store, its staging folder).
"""

import logging
import time
from pathlib import Path

from fineforge.flows.pipeline_config import PipelineConfig
from fineforge.model.tracking import TRACKING_URI_ENV
from fineforge.tasks.common.object_store import local_path
from fineforge.tasks.tracking import tracking_uri
from fineforge.tasks.training.completion import claimed_inputs, completed_training
from fineforge.tasks.training.launch import launch_training

log = logging.getLogger(__name__)

MODULE = "fineforge.model.pretrain"
NODE_WAIT_SECONDS = 24 * 3600  # a data build of a full dump runs for hours before node 0 claims the run
POLL_SECONDS = 2.0


class NodeWaitTimeout(RuntimeError):
    """Node 0 did not claim the run folder in time."""


def wait_for_claim(run_dir: Path, seconds: float) -> dict:
    """The inputs node 0 recorded in `run_dir` for a training run that is not complete yet (a complete one is the
    record of an earlier run: the pipeline skips it); NodeWaitTimeout after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        inputs = claimed_inputs(run_dir)
        if inputs is not None and completed_training(run_dir, inputs) is None:
            return inputs
        time.sleep(POLL_SECONDS)
    raise NodeWaitTimeout(f"node 0 did not claim the training run folder {run_dir} within {seconds:.0f} s (is its "
                          "pipeline running, and not finding the run complete?)")


def join_pretrain(config: PipelineConfig, wait_seconds: float = NODE_WAIT_SECONDS) -> None:
    """Run this node's torchrun of the pipeline's pretraining once node 0 has claimed its run folder."""
    launch = config.pretrain.launch
    run_dir = local_path(config.run_dir)  # an object store's run folder: its staging copy, shared by the nodes
    log.info("node %d of %d: waiting for node 0 to claim %s", launch.node_rank, launch.nnodes, run_dir)
    train = wait_for_claim(run_dir, wait_seconds)["config"]
    uri = tracking_uri(local_path(config.workdir), config.mlflow_tracking_uri)  # as node 0: global rank 0 may be here
    launch_training(MODULE, train, run_dir / f"pretrain_config.node{launch.node_rank}.json", launch,
                    env={TRACKING_URI_ENV: uri})
