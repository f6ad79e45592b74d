"""RLHF end to end through the `rl` flow: rewards from a reward model, an adaptive KL penalty to the SFT reference,
and the reward-hacking watch against a judge that disagrees with the reward model on every pair (its head negated),
so the reward model's rise is the judge's fall: the watch fires, the run stops at the checkpoint of the best judge
score, the MLflow run is tagged and the flow emits a Prefect event."""

from __future__ import annotations

import asyncio
import time

from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client
from prefect.events.worker import EventsWorker

from fineforge.flows.rl import WATCH_EVENT, rl
from fineforge.flows.rl_config import RLFlowConfig
from fineforge.model.checkpoint import read_meta
from fineforge.model.rl.stage_config import RLConfig
from fineforge.model.tracking import read_metrics
from fineforge.tasks.training.launch import LaunchConfig
from testkit.rl import write_tool_prompts
from testkit.rlhf import reward_model_checkpoint
from testkit.tool_caller import save_chat_checkpoint

MAX_STEPS = 16
EVAL_EVERY = 2


async def watch_events() -> list[dict]:
    async with get_client() as client:
        response = await client._client.post("/events/filter", json={"filter": {"event": {"name": [WATCH_EVENT]}}})
        response.raise_for_status()
        return response.json()["events"]


def emitted_watch_events(deadline_s: float = 30) -> list[dict]:
    """The watch events the API holds (events reach it shortly after they are emitted)."""
    EventsWorker.drain_all()
    deadline = time.monotonic() + deadline_s
    while not (events := asyncio.run(watch_events())) and time.monotonic() < deadline:
        time.sleep(0.5)
    return events


def test_the_watch_stops_a_run_that_games_its_reward_model(tool_caller, tmp_path, mlflow_uri, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    save_chat_checkpoint(*tool_caller, tmp_path / "sft")  # a chat model: its replies end (and can be scored)
    sft = tmp_path / "sft"
    run_dir = tmp_path / "run"
    train = RLConfig(
        init_checkpoint=str(sft), run_dir=str(run_dir), experiment="rlhf-test", verifier=None,
        reward_model=str(reward_model_checkpoint(tmp_path / "rm", sft, seed=1)),
        judge_model=str(reward_model_checkpoint(tmp_path / "judge", sft, seed=1, sign=-1.0)),
        prompts=str(write_tool_prompts(tmp_path / "prompts.jsonl")),
        eval_prompts=str(write_tool_prompts(tmp_path / "held_out.jsonl", copies=1)),
        prompts_per_rollout=4, samples_per_prompt=8, micro_batch_size=16, max_new_tokens=48, temperature=1.5,
        lr=2e-3, min_lr=2e-3, kl_beta=0.05, kl_target=0.01, kl_horizon=64, watch_window=3, max_steps=MAX_STEPS,
        eval_every=EVAL_EVERY, checkpoint_every=EVAL_EVERY, eval_count=2, eval_samples=8, pass_k=1, sample_every=0,
    )  # fmt: skip
    result = rl(RLFlowConfig(train=train, launch=LaunchConfig(retries=0)))

    assert result["stopped_early"] and result["step"] == result["watch_fired_at"] < MAX_STEPS, result
    records = read_metrics(run_dir)
    scores = {r["step"]: r for r in records if r["kind"] == "metrics" and "watch_reward_model" in r}
    assert sorted(scores) == list(range(EVAL_EVERY, result["step"] + 1, EVAL_EVERY))
    for values in scores.values():  # the judge is the reward model negated
        assert abs(values["watch_judge"] + values["watch_reward_model"]) < 1e-3 * (1 + abs(values["watch_judge"]))
        assert values["watch_length"] > 0 and 0 <= values["watch_distinct_1"] <= 1
    best = max(scores, key=lambda step: (scores[step]["watch_judge"], -step))
    assert result["best_step"] == best
    assert read_meta(result["checkpoint"])["step"] == best  # the best checkpoint outlived the pruning
    betas = [r["kl_beta"] for r in records if r["kind"] == "metrics" and "kl_beta" in r]
    assert len(betas) == result["step"] and betas[-1] != betas[0]  # adapted every roll-out batch

    run = MlflowClient(mlflow_uri).get_run(result["mlflow_run_id"])
    assert run.data.tags["fineforge.watch"] == "fired" and run.data.tags["fineforge.watch.best_step"] == str(best)
    [event] = emitted_watch_events()
    assert event["payload"]["best_step"] == best and event["payload"]["mlflow_run_id"] == result["mlflow_run_id"]
