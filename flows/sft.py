"""The `sft` flow: build the conversations (optional), then fine-tune a checkpoint on them under torchrun
(retried, resuming), and publish the summary with the conversation set's counts."""

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from fineforge.flows.sft_config import SFTFlowConfig
from fineforge.flows.training import publish_summary, train_under_torchrun
from fineforge.model.sft import SFTStage
from fineforge.model.trainer import check_launch
from fineforge.tasks.conversations.config import ConversationsConfig
from fineforge.tasks.conversations.job import build_conversations

CONFIG_FILE = "sft_config.json"
SUMMARY_ARTIFACT = "sft-summary"


@task(name="conversations", cache_policy=NO_CACHE)
def conversations_task(config: ConversationsConfig) -> dict:
    """The conversation stage (skipped when its complete output exists for the same inputs and settings)."""
    return build_conversations(config)


@flow(name="sft", description="Fine-tune a pretrained GPT on conversations (loss on the assistant's tokens) under "
      "torchrun, tracked in MLflow.")
def sft(config: SFTFlowConfig) -> dict:
    """Build the conversations when configured, check the run against them, and train to completion; a failed
    launch is retried and resumes from the newest checkpoint."""
    counts = {}
    if config.conversations is not None:
        stats = conversations_task(config.conversations)
        counts = {f"conversations {split}": stats[f"conversations_{split}"] for split in ("train", "val")}
        check_launch(SFTStage(config.train), config.launch.world_size)  # the shards now exist: every check
    result = train_under_torchrun("fineforge.model.sft", config.train, config.launch, config.mlflow_tracking_uri,
                                  CONFIG_FILE)
    publish_summary(result, SUMMARY_ARTIFACT, {**counts, "data_dir": config.train.data_dir,
                                               "init_checkpoint": config.train.init_checkpoint})
    return result
