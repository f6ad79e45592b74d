"""The RL stage on a tiny model: the reward rises on a learnable verifiable task (the real trainer, tracked in a
real MLflow store), exact resume after SIGKILL under torchrun with two ranks (roll-outs split, DDP updates, two
updates per roll-out batch, KL to a frozen reference), a verifier that raises, and bad input refused before launch."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from fineforge.model.checkpoint import CHECKPOINTS_SUBDIR, META_FILE, MODEL_FILE, latest_checkpoint, load_model
from fineforge.model.config import ConfigError
from fineforge.model.rl.stage import RLStage
from fineforge.model.rl.stage_config import RLConfig
from fineforge.model.tokenizer import OUTPUT_END, OUTPUT_START
from fineforge.model.tracking import read_metrics, recorded_run
from fineforge.model.trainer import check_launch, start_training
from fineforge.model.verifiers import Verifier, require_fields
from fineforge.tasks.training.launch import LaunchConfig, run_command, torchrun_command
from testkit.checkpoints import tiny_bytes_checkpoint
from testkit.processes import kill_tree
from testkit.rl import write_digit_prompts, write_tool_prompts
from testkit.tool_caller import save_chat_checkpoint

STEP_METRICS = ("reward_mean", "reward_std", "zero_variance_fraction", "response_length_mean", "response_length_max",
                "entropy", "clip_fraction", "rollout_tokens_per_s", "update_tokens_per_s", "verifier_errors")


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> dict[str, str]:
    """A tiny random bytes model, 32 training prompts and 8 held-out ones of the digits task."""
    root = tmp_path_factory.mktemp("rl-task")
    return {"init_checkpoint": str(tiny_bytes_checkpoint(root / "init")),
            "prompts": str(write_digit_prompts(root / "train.jsonl", 32)),
            "eval_prompts": str(write_digit_prompts(root / "val.jsonl", 8, question="Digits, please."))}


def rl_config(task: dict, run_dir: Path, **overrides) -> dict:
    """Four prompts x eight replies of at most 16 tokens per batch; a finished reply earns 1 (the format reward)
    plus its share of digits."""
    return {
        **task, "run_dir": str(run_dir), "verifier": "testkit.rl:DIGITS", "format_weight": 1.0,
        "prompts_per_rollout": 4, "samples_per_prompt": 8, "max_new_tokens": 16, "micro_batch_size": 8,
        "lr": 2e-3, "min_lr": 2e-3, "max_steps": 8, "eval_every": 4, "sample_every": 4, "checkpoint_every": 4,
        "eval_count": 8, "eval_samples": 4, "pass_k": 2, "pass_threshold": 0.2, **overrides,
    }  # fmt: skip


def by_step(records: list[dict], key: str) -> dict[int, float]:
    return {r["step"]: r[key] for r in records if r["kind"] == "metrics" and key in r}


@pytest.mark.usefixtures("torch_one_thread")
def test_reward_rises_and_the_run_is_tracked(task, tmp_path, mlflow_uri):
    run_dir = tmp_path / "run"
    summary = start_training(RLStage(RLConfig(**rl_config(task, run_dir)))).train()

    records = read_metrics(run_dir)
    rewards = by_step(records, "reward_mean")
    assert sorted(rewards) == list(range(1, 9))
    first, last = (rewards[1] + rewards[2]) / 2, (rewards[7] + rewards[8]) / 2
    assert last > first + 0.5, rewards  # the model learned to end its replies, and to write digits
    for key in STEP_METRICS:
        assert sorted(by_step(records, key)) == list(range(1, 9)), key
    assert "kl" not in by_step(records, "kl")  # no reference without kl_beta
    passes = by_step(records, "pass_at_1")
    assert sorted(passes) == [4, 8] and summary["pass_at_1"] == passes[8]
    assert 0 <= passes[8] <= by_step(records, "pass_at_2")[8] <= 1

    run_id = recorded_run(run_dir)["run_id"]
    client = MlflowClient(mlflow_uri)
    assert [m.step for m in client.get_metric_history(run_id, "reward_mean")] == list(range(1, 9))
    assert {m.step for m in client.get_metric_history(run_id, "pass_at_1")} == {4, 8}
    assert client.get_run(run_id).data.tags["fineforge.stage"] == "rl"
    samples = (run_dir / "samples" / "step_00000008.txt").read_text()
    assert samples.startswith("=== prompt digits-") and "--- reward " in samples
    assert "samples/step_00000008.txt" in {a.path for a in client.list_artifacts(run_id, "samples")}

    model, meta = load_model(run_dir)  # what `fineforge chat` loads
    assert meta["stage"] == "rl" and meta["tokenizer"]["spec"] == "bytes" and meta["verifier"] == "digits"
    assert meta["data_position"] == {"rollout_batches": 8, "prompts_taken": 32, "kl_beta": 0.0, "watch": None,
                                     "prompts_sha256": meta["prompts"]["sha256"]}
    assert model.config.dropout == 0.0


@pytest.fixture(scope="module")
def tool_task(tool_caller, tmp_path_factory) -> dict[str, str]:
    """The tiny tool-calling chat model as an SFT checkpoint; prompts it answers with a python call, or plainly."""
    root = tmp_path_factory.mktemp("rl-tools")
    save_chat_checkpoint(*tool_caller, root / "init")
    return {"init_checkpoint": str(root / "init"), "prompts": str(write_tool_prompts(root / "train.jsonl")),
            "eval_prompts": str(write_tool_prompts(root / "val.jsonl", copies=1))}


def tool_config(tool_task: dict, run_dir: Path, **overrides) -> dict:
    return rl_config(tool_task, run_dir, **{
        "max_new_tokens": 64, "max_steps": 1, "eval_every": 0, "sample_every": 0, "checkpoint_every": 0,
        "use_mlflow": False, "format_weight": 0.0, "temperature": 0.7, "eval_prompts": None, **overrides})


def launch(config_path: Path) -> list[str]:
    return torchrun_command("fineforge.model.rl", config_path, LaunchConfig(nproc_per_node=2))


def test_sigkilled_run_resumes_exactly(tool_task, tmp_path):
    """Two ranks, two prompts each, their python calls run by the calculator; two optimizer steps per roll-out batch
    (the second one off ratio 1), KL to the initial model."""
    settings = {"verifier": "testkit.rl:TOOL_RESULT", "python_tool": "calculator", "samples_per_prompt": 4,
                "micro_batch_size": 2, "minibatches": 2, "kl_beta": 0.1, "max_steps": 6, "checkpoint_every": 2,
                "eval_every": 6, "eval_samples": 2, "sample_every": 6, "eval_prompts": tool_task["eval_prompts"],
                "temperature": 1.4}  # the tool caller is nearly deterministic at 1: its groups would be all alike
    paths = {}
    for name in ("reference", "killed"):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(tool_config(tool_task, tmp_path / name, **settings)))
    run_command(launch(paths["reference"]))

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(launch(paths["killed"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while latest_checkpoint(killed_dir / CHECKPOINTS_SUBDIR) is None and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint written in time"
        time.sleep(0.05)
    victims = kill_tree(proc.pid)
    assert proc.wait() == -9 and len(victims) >= 3  # torchrun and both workers
    assert not any(r["kind"] == "end" for r in read_metrics(killed_dir)), "the run finished before it was killed"

    run_command(launch(paths["killed"]))  # the same command again: resumes from the newest checkpoint

    records = read_metrics(killed_dir)
    starts = [i for i, r in enumerate(records) if r["kind"] == "start"]
    restart = records[starts[-1]]
    assert len(starts) == 2 and restart["resumed"] and restart["step"] % 2 == 0 and restart["step"] < 6
    reference = read_metrics(tmp_path / "reference")
    for key in ("reward_mean", "train_loss", "grad_norm", "kl", "clip_fraction", "entropy", "pass_at_1"):
        expected = {s: v for s, v in by_step(reference, key).items() if s > restart["step"]}
        assert expected and by_step(records[starts[-1]:], key) == expected, key
    assert max(by_step(reference, "clip_fraction").values()) > 0  # the second update of a batch clipped
    assert max(by_step(reference, "reward_mean").values()) > 0 and max(by_step(reference, "kl").values()) > 0
    final_ref = load_file(latest_checkpoint(tmp_path / "reference" / CHECKPOINTS_SUBDIR) / MODEL_FILE)
    final_resumed = load_file(latest_checkpoint(killed_dir / CHECKPOINTS_SUBDIR) / MODEL_FILE)
    assert all(final_ref[k].equal(final_resumed[k]) for k in final_ref)


def raise_on_odd_answers(metadata, completion: str) -> float:
    if int(metadata["answer"]) % 2:
        raise KeyError("odd")
    return 1.0


FLAKY = Verifier("flaky", raise_on_odd_answers, require_fields("answer"))


@pytest.mark.usefixtures("torch_one_thread")
def test_tool_calls_run_in_roll_outs_and_their_outputs_are_not_trained(tool_task, tmp_path):
    trainer = start_training(RLStage(RLConfig(**tool_config(tool_task, tmp_path / "run", python_tool="calculator",
                                                            verifier="testkit.rl:TOOL_RESULT"))))
    trainer.train()
    rollouts, _ = trainer.stage.last_rollouts
    output_start, output_end = (trainer.stage.tokenizer.encode_special(t) for t in (OUTPUT_START, OUTPUT_END))
    called = [r for r in rollouts if output_start in r.completion]
    assert called, [r.text for r in rollouts]
    for rollout in called:
        start, end = rollout.completion.index(output_start), rollout.completion.index(output_end)
        assert rollout.trained[start : end + 1] == [0] * (end + 1 - start)  # what the calculator printed
        assert rollout.trained[:start] == [1] * start  # what the model wrote
    rewarded = [r for r in called if r.reward == 1.0]
    assert rewarded and all("<OUTPUT_START>51<OUTPUT_END>" in r.text for r in rewarded)


@pytest.mark.usefixtures("torch_one_thread")
def test_a_verifier_that_raises_costs_its_samples_not_the_run(tool_task, tmp_path, caplog):
    config = tool_config(tool_task, tmp_path / "run", verifier=f"{__name__}:FLAKY", max_steps=2)
    with caplog.at_level(logging.WARNING, logger="fineforge.model.verifiers"):
        start_training(RLStage(RLConfig(**config))).train()
    records = read_metrics(tmp_path / "run")
    errors, finished = by_step(records, "verifier_errors"), by_step(records, "finished_fraction")
    for step in (1, 2):  # half the prompts have an odd answer; unfinished replies are not scored, so never raise
        assert 0 < errors[step] <= 16 * finished[step]
    assert sorted(by_step(records, "reward_mean")) == [1, 2]
    assert [r.getMessage() for r in caplog.records].count(
        "verifier 'flaky' raised KeyError ('odd'); such samples get reward 0, logged once per kind") == 1


def refused(config: dict, world_size: int = 1) -> str:
    with pytest.raises(ConfigError) as error:
        check_launch(RLStage(RLConfig(**config)), world_size)
    return str(error.value)


def write_lines(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_bad_input_is_refused_before_launch(task, tmp_path):
    run = tmp_path / "run"
    no_answers = write_lines(tmp_path / "q.jsonl", [{"id": "a", "question": "1 + 1?"}, {"question": "2 + 2?"}])
    assert "rl config field 'prompts': " in refused(rl_config(task, run, prompts=no_answers, verifier="gsm8k"))
    assert "2 of 2 prompts lack what verifier 'gsm8k' needs; prompt 0 (id a): no 'answer' field" in refused(
        rl_config(task, run, prompts=no_answers, verifier="gsm8k"))
    assert "field 'verifier': unknown verifier 'nope'" in refused(rl_config(task, run, verifier="nope"))
    assert "'testkit.rl:write_digit_prompts' is a function, not a Verifier" in refused(
        rl_config(task, run, verifier="testkit.rl:write_digit_prompts"))
    long_question = write_lines(tmp_path / "long.jsonl", [{"id": "long", "question": "x" * 200, "answer": "1"}])
    assert "1 prompt(s) longer than the 112 tokens the context leaves beside max_new_tokens (the first: ['long'])" in \
        refused(rl_config(task, run, prompts=long_question))
    assert "field 'max_new_tokens': 128 leaves no room" in refused(rl_config(task, run, max_new_tokens=128))

    assert "field 'prompts_per_rollout': 4 prompts do not split over 3 ranks" in refused(rl_config(task, run), 3)
    assert "field 'checkpoint_every': must be a multiple of the updates per roll-out batch (ppo_epochs x " \
           "minibatches = 2)" in refused(rl_config(task, run, minibatches=2, micro_batch_size=4, checkpoint_every=3))
    assert "field 'micro_batch_size'" in refused(rl_config(task, run, micro_batch_size=5))
    assert "field 'python_tool'" in refused(rl_config(task, run, python_tool="bash"))
    assert "field 'sampling_threads': must be null (as the update) or > 0" in refused(
        rl_config(task, run, sampling_threads=0))
    assert "field 'clip_low': must be in [0, 1)" in refused(rl_config(task, run, clip_low=1.5))
    assert "field 'init_checkpoint': must lie outside run_dir" in refused(
        rl_config(task, Path(task["init_checkpoint"]).parent))


def test_checkpoints_that_do_not_fit_are_refused_before_launch(task, tmp_path):
    run = tmp_path / "run"
    no_chat = tiny_bytes_checkpoint(tmp_path / "small-vocab", vocab_size=257)
    assert "field 'init_checkpoint'" in refused(rl_config(task, run, init_checkpoint=str(no_chat)))

    deeper = tiny_bytes_checkpoint(tmp_path / "deeper", n_layer=5)
    message = refused(rl_config(task, run, kl_beta=0.1, reference_checkpoint=str(deeper)))
    assert "field 'reference_checkpoint': " in message and "another model shape than the policy: {'n_layer': (5, 4)}" \
        in message
    other_tokenizer = tmp_path / "other-tokenizer"
    shutil.copytree(Path(task["init_checkpoint"]), other_tokenizer)
    meta_path = latest_checkpoint(other_tokenizer / CHECKPOINTS_SUBDIR) / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["tokenizer"] = {**meta["tokenizer"], "name": "my-bytes"}
    meta_path.write_text(json.dumps(meta))
    assert "was trained with tokenizer 'my-bytes'" in refused(
        rl_config(task, run, kl_beta=0.1, reference_checkpoint=str(other_tokenizer)))
    # without a KL term no reference is loaded, so none is checked
    check_launch(RLStage(RLConfig(**rl_config(task, run, reference_checkpoint=str(deeper)))), 1)


@pytest.mark.usefixtures("torch_one_thread")
def test_a_resume_on_another_prompt_set_is_refused(task, tmp_path):
    config = rl_config(task, tmp_path / "run", max_steps=1, checkpoint_every=1, eval_every=0, sample_every=0,
                       use_mlflow=False, samples_per_prompt=2, micro_batch_size=8, max_new_tokens=4)
    start_training(RLStage(RLConfig(**config))).train()
    other = write_digit_prompts(tmp_path / "other.jsonl", 16)
    assert "field 'prompts': " in refused({**config, "prompts": str(other), "max_steps": 2})
    assert "not the prompt set the run in" in refused({**config, "prompts": str(other), "max_steps": 2})
