"""A deployment's run executes a cloudpickled copy of its flow: the copy must still validate its parameters.

With `from __future__ import annotations` in the flow's module the config annotation is a string that the
copy's globals cannot resolve, and every run started from the Prefect UI or a schedule failed in 0 s
(`PydanticUserError: 'Data_BuildModel' is not fully defined`)."""

import ast
from pathlib import Path

import cloudpickle
import pytest

from fineforge.flows.deploy import load_flow, read_deployments
from fineforge.model.tokenizer import load_tokenizer
from fineforge.tasks.preferences.pairs import PairsConfig, build_preference_set
from testkit.checkpoints import tiny_bytes_checkpoint
from testkit.conversations import write_chat_conversations
from testkit.preferences import untrained_checkpoint, write_rule_rankings
from testkit.quality import small_train_config, train_small_classifier
from testkit.rl import write_digit_prompts
from testkit.shakespeare import write_shakespeare_shards

FLOWS_DIR = Path(__file__).resolve().parents[2] / "flows"


@pytest.fixture(scope="module")
def shards(shared_data, tmp_path_factory) -> Path:
    """Real token shards: the pretrain config's checks read them before any run starts."""
    text = shared_data / "corpora" / "tinyshakespeare.txt"
    return write_shakespeare_shards(text, tmp_path_factory.mktemp("shards"), limit=100_000)


@pytest.fixture(scope="module")
def rl_inputs(tmp_path_factory) -> dict[str, str]:
    """A real checkpoint, prompt set, question file and conversation set: the configs' checks read them."""
    folder = tmp_path_factory.mktemp("rl")
    questions = folder / "questions.jsonl"
    questions.write_text('{"question": "What is 2 + 2?", "answer": "4"}\n')
    return {"init_checkpoint": str(tiny_bytes_checkpoint(folder / "init")),
            "prompts": str(write_digit_prompts(folder / "prompts.jsonl", 16)),
            "questions": str(questions),
            "conversations": str(write_chat_conversations(folder / "chat", count=40, context_length=128))}


@pytest.fixture(scope="module")
def reward_inputs(tmp_path_factory) -> dict[str, str]:
    """A real trunk checkpoint and preference set: the reward config's checks load them before any run starts."""
    folder = tmp_path_factory.mktemp("reward")
    config = PairsConfig(rankings=str(write_rule_rankings(folder / "rankings.jsonl", "keyword", 100)),
                         output=str(folder / "set"), tokenizer="bytes", max_length=128)
    build_preference_set(config, load_tokenizer("bytes"))
    return {"init_checkpoint": str(untrained_checkpoint(folder / "trunk")), "data_dir": config.output}


@pytest.fixture(scope="module")
def quality_workdir(shared_data, tmp_path_factory) -> Path:
    """A build and a real quality classifier trained on it: the scoring config's checks read its report."""
    workdir = tmp_path_factory.mktemp("quality")
    train_small_classifier(shared_data, workdir)
    return workdir


def valid_parameters(shared_data: Path, tmp_path: Path, shards: Path, rl_inputs: dict,
                     reward_inputs: dict, quality_workdir: Path) -> dict[str, dict]:
    """The smallest valid parameters of each deployed flow, by flow name (a new flow adds its own here)."""
    return {
        "data_build": {"config": {"input": str(shared_data / "warc" / "cc-main-2014-35-sample.warc"),
                                  "workdir": str(tmp_path)}},
        "tokenize": {"config": {"input": [str(next(quality_workdir.glob("*/scrubbed")))], "workdir": str(tmp_path),
                                "tokenizer": "bytes"}},
        "pretrain": {"config": {"train": {"data_dir": str(shards), "run_dir": str(tmp_path / "run")}}},
        "rl": {"config": {"train": {"init_checkpoint": rl_inputs["init_checkpoint"], "prompts": rl_inputs["prompts"],
                                    "verifier": "word_problems", "max_new_tokens": 32,
                                    "run_dir": str(tmp_path / "run")}}},
        "sft": {"config": {"train": {"data_dir": rl_inputs["conversations"],
                                     "init_checkpoint": rl_inputs["init_checkpoint"],
                                     "run_dir": str(tmp_path / "sft")}}},
        "interrogate": {"config": {"checkpoint": rl_inputs["init_checkpoint"], "questions": rl_inputs["questions"],
                                   "output_dir": str(tmp_path / "interrogation")}},
        "collect_rankings": {"config": {"checkpoint": rl_inputs["init_checkpoint"], "prompts": rl_inputs["prompts"],
                                        "dataset": str(tmp_path / "rankings.jsonl")}},
        "reward_model": {"config": {"train": {**reward_inputs, "run_dir": str(tmp_path / "run")}}},
        "quality_train": {"config": small_train_config(shared_data, quality_workdir)},
        "quality_score": {"config": {"workdir": str(quality_workdir)}},
        "pipeline": {"config": {"data_build": {"input": str(shared_data / "warc" / "cc-main-2014-35-sample.warc")},
                                "tokenize": {"tokenizer": "bytes"}, "workdir": str(tmp_path)}},
    }


@pytest.mark.parametrize("spec", read_deployments(), ids=lambda spec: spec.entrypoint)
def test_a_pickled_copy_of_every_deployed_flow_validates_its_parameters(
        spec, shared_data, tmp_path, shards, rl_inputs, reward_inputs, quality_workdir):
    flow = load_flow(spec.entrypoint)
    parameters = valid_parameters(shared_data, tmp_path, shards, rl_inputs, reward_inputs, quality_workdir)
    assert flow.name in parameters, f"add the smallest valid parameters of {flow.name!r} to valid_parameters()"
    copy = cloudpickle.loads(cloudpickle.dumps(flow))
    validated = copy.validate_parameters(parameters[flow.name])
    assert type(validated["config"]).__name__ != "dict"  # the config model was built


def test_no_flow_module_postpones_annotations():
    """The cause itself, for every module under flows/ that defines a flow (also those not deployed yet)."""
    offenders = []
    for module in sorted(FLOWS_DIR.glob("*.py")):
        tree = ast.parse(module.read_text())
        defines_flow = any(isinstance(node, ast.FunctionDef) and any(
            "flow" in ast.unparse(d).split("(")[0].split(".")[-1:] for d in node.decorator_list)
            for node in ast.walk(tree))
        postponed = any(isinstance(node, ast.ImportFrom) and node.module == "__future__" for node in tree.body)
        if defines_flow and postponed:
            offenders.append(module.name)
    assert not offenders, f"remove `from __future__ import annotations` from {offenders}"
