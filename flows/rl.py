"""The `rl` flow: reinforce a chat model's verified answers, or a reward model's preferences (RLHF), under torchrun
(retried, resuming); publish the summary, and emit a Prefect event when the reward-hacking watch stopped the run."""

from prefect import flow
from prefect.events import emit_event

from fineforge.flows.rl_config import RLFlowConfig
from fineforge.flows.training import publish_summary, train_under_torchrun

CONFIG_FILE = "rl_config.json"
SUMMARY_ARTIFACT = "rl-summary"
WATCH_EVENT = "fineforge.rl.watch.fired"  # an automation on it can notify someone


@flow(name="rl", description="Reinforcement learning (GRPO) from an SFT checkpoint: sample replies, reward them by a "
      "verifier or a reward model (RLHF, with the reward-hacking watch), under torchrun, tracked in MLflow.")
def rl(config: RLFlowConfig) -> dict:
    """Train to completion (or to the watch's stop); a failed launch is retried and resumes from the newest
    checkpoint (roll-outs included)."""
    train = config.train
    result = train_under_torchrun("fineforge.model.rl", train, config.launch, config.mlflow_tracking_uri, CONFIG_FILE)
    rewards = {"reward_model": train.reward_model, "judge_model": train.judge_model} if train.reward_model else {}
    publish_summary(result, SUMMARY_ARTIFACT, {"init_checkpoint": train.init_checkpoint, "prompts": train.prompts,
                                               "eval_prompts": train.eval_prompts, "verifier": train.verifier,
                                               **rewards})
    if result.get("stopped_early"):
        emit_watch_event(result, train.run_dir)
    return result


def emit_watch_event(result: dict, run_dir: str) -> None:
    """The watch fired: the event names the run folder and the MLflow run, the steps, and the checkpoint kept."""
    emit_event(
        event=WATCH_EVENT,
        resource={"prefect.resource.id": f"fineforge.rl-run.{run_dir}", "prefect.resource.name": run_dir},
        payload={key: result.get(key) for key in ("watch_fired_at", "best_step", "checkpoint", "mlflow_run_id",
                                                  "mlflow_tracking_uri")},
    )  # fmt: skip
