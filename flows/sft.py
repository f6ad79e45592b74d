"""The `sft` flow: build the conversations (optional), then fine-tune a checkpoint on them under torchrun
(retried, resuming), and publish the summary with the conversation set's counts."""

from pathlib import Path

from prefect import flow

from fineforge.flows.sft_config import SFTFlowConfig
from fineforge.flows.training import publish_summary, train_under_torchrun
from fineforge.model.sft import SFTStage
from fineforge.model.trainer import check_launch
from fineforge.tasks.common.stage_task import run_stage
from fineforge.tasks.conversations.job import ConversationsStage, stage_tokenizer

CONFIG_FILE = "sft_config.json"
SUMMARY_ARTIFACT = "sft-summary"


@flow(name="sft", description="Fine-tune a pretrained GPT on conversations (loss on the assistant's tokens) under "
      "torchrun, tracked in MLflow.")
def sft(config: SFTFlowConfig) -> dict:
    """Build the conversations when configured, check the run against them, and train to completion; a failed
    launch is retried and resumes from the newest checkpoint."""
    counts = {}
    if config.conversations is not None:
        build = config.conversations  # the stage is skipped when complete for the same inputs and settings
        stats = run_stage(ConversationsStage(build, stage_tokenizer(build)), Path(build.workdir)).statistics
        counts = {f"conversations {split}": stats[f"conversations_{split}"] for split in ("train", "val")}
        check_launch(SFTStage(config.train), config.launch.world_size)  # the shards now exist: every check
    result = train_under_torchrun("fineforge.model.sft", config.train, config.launch, config.mlflow_tracking_uri,
                                  CONFIG_FILE)
    publish_summary(result, SUMMARY_ARTIFACT, {**counts, "data_dir": config.train.data_dir,
                                               "init_checkpoint": config.train.init_checkpoint})
    return result
