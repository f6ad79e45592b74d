"""The `interrogate` flow on a tiny real chat model that was taught some facts by the real SFT stage: the facts it
knows keep their answer, the ones it cannot know are refused; the output is a source the conversation stage
reads; the per-question table reaches Prefect and MLflow; bad input gets one error line before any sampling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.flows.interrogate import RESULTS_ARTIFACT, interrogate
from fineforge.model.interrogation import DEFAULT_REFUSAL
from fineforge.tasks.conversations.config import ConversationsConfig
from fineforge.tasks.conversations.job import build_conversations
from fineforge.tasks.interrogation import InterrogationConfig, run_interrogation
from fineforge.tasks.training.launch import LaunchConfig, run_command, torchrun_command
from testkit.checkpoints import tiny_bytes_checkpoint

TAUGHT = {"Ada": "Oslo", "Bo": "Rome", "Cy": "Kyiv"}  # what the model learns in SFT
UNTAUGHT = {"Dee": "Lima", "Eli": "Cairo", "Fay": "Quito"}  # asked, never taught
runner = CliRunner()


def fact(name: str, city: str) -> dict:
    return {"id": name, "question": f"Where does {name} live?", "answer": city,
            "response": f"{name} lives in {city}."}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def taught(tmp_path_factory) -> Path:
    """A tiny model that learned TAUGHT through the real conversation stage and SFT under torchrun."""
    tmp = tmp_path_factory.mktemp("taught")
    lessons = write_jsonl(tmp / "lessons.jsonl", [{"prompt": f["question"], "response": f["response"], "id": f["id"]}
                                                  for f in (fact(n, c) for n, c in TAUGHT.items())])
    stats = build_conversations(ConversationsConfig.model_validate({
        "workdir": str(tmp), "name": "facts", "tokenizer": "bytes", "context_length": 96, "too_long": "drop",
        "val_fraction": 0.25, "sources": [  # identity conversations fill the validation split
            {"kind": "jsonl", "path": str(lessons), "epochs": 8},
            {"kind": "identity", "assistant_name": "Forge", "maker": "Acme", "count": 40, "languages": ["en"]}],
    })).statistics  # fmt: skip
    assert stats["sources"][0]["conversations_train"] == 8 * len(TAUGHT)  # every lesson is trained on
    init = tiny_bytes_checkpoint(tmp / "init", block_size=96, n_layer=2, n_head=2, n_embd=64)
    data = tmp / "conversations" / "facts"
    config = {"data_dir": str(data), "init_checkpoint": str(init), "run_dir": str(tmp / "sft"), "max_steps": 120,
              "micro_batch_size": 4, "row_multiple": 16, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 10,
              "eval_every": 0, "sample_every": 0, "checkpoint_every": 0, "eval_batches": 1, "use_mlflow": False}
    (tmp / "sft.json").write_text(json.dumps(config))
    run_command(torchrun_command("fineforge.model.sft", tmp / "sft.json", LaunchConfig()), env={"OMP_NUM_THREADS": "1"})
    return tmp / "sft"


def test_known_facts_keep_their_answer_unknown_ones_are_refused(taught, tmp_path, mlflow_uri):
    questions = write_jsonl(tmp_path / "questions.jsonl",
                            [fact(n, c) for n, c in {**TAUGHT, **UNTAUGHT}.items()])
    config = InterrogationConfig(checkpoint=str(taught), questions=str(questions), output_dir=str(tmp_path / "out"),
                                 num_samples=3, temperature=0.7, max_new_tokens=40)
    result = interrogate(config, mlflow_uri)

    results = {r["id"]: r for r in map(json.loads, (tmp_path / "out" / "results.jsonl").read_text().splitlines())}
    assert {n for n, r in results.items() if r["verdict"] == "known"} == set(TAUGHT), results
    assert all(r["correct_fraction"] == 0 for n, r in results.items() if n in UNTAUGHT)
    assert all(len(r["replies"]) == 3 for r in results.values())
    sft = {r["id"]: r for r in map(json.loads, (tmp_path / "out" / "sft.jsonl").read_text().splitlines())}
    assert sft["interrogation-Ada"] == {"id": "interrogation-Ada", "prompt": "Where does Ada live?",
                                        "response": "Ada lives in Oslo.", "answer": "Oslo"}
    assert sft["interrogation-Dee"] == {"id": "interrogation-Dee", "prompt": "Where does Dee live?",
                                        "response": DEFAULT_REFUSAL}
    assert result["questions"] == 6 and result["known"] == 3 and result["unknown"] == 3

    # the SFT data is a source of the conversation stage as it is
    stats = build_conversations(ConversationsConfig.model_validate({
        "workdir": str(tmp_path / "work"), "name": "refusals", "tokenizer": "bytes", "context_length": 128,
        "sources": [{"kind": "jsonl", "path": str(tmp_path / "out" / "sft.jsonl")}],
    })).statistics  # fmt: skip
    assert stats["conversations_out"] == 6 and not stats["dropped"]

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        key = ArtifactFilterKey(any_=[RESULTS_ARTIFACT])
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=key))
    rows = json.loads(artifact.data)
    assert {r["id"]: r["verdict"] for r in rows} == {n: "known" if n in TAUGHT else "unknown" for n in results}

    client = MlflowClient(mlflow_uri)
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.metrics["unknown"] == 3 and run.data.params["num_samples"] == "3"
    history = client.get_metric_history(run.info.run_id, "question_correct_fraction")
    assert sorted(m.step for m in history) == list(range(6))
    table = client.load_table(run.info.experiment_id, "results_table.json", run_ids=[run.info.run_id])
    assert list(table["verdict"]) == [r["verdict"] for r in rows]
    assert {"sft.jsonl", "results.jsonl", "summary.json", "results_table.json"} <= {
        a.path for a in client.list_artifacts(run.info.run_id)}


def test_refusals_capped_and_replies_independent_of_batching(taught, tmp_path):
    """max_refusal_share keeps refusals a minority of sft.jsonl; questions batched together get the replies they
    get one by one."""
    questions = write_jsonl(tmp_path / "questions.jsonl", [fact(n, c) for n, c in {**TAUGHT, **UNTAUGHT}.items()])

    def results(name: str, **settings) -> dict:
        config = InterrogationConfig(checkpoint=str(taught), questions=str(questions), num_samples=3,
                                     output_dir=str(tmp_path / name), temperature=0.7, max_new_tokens=40, **settings)
        summary = run_interrogation(config).summary
        lines = (tmp_path / name / "results.jsonl").read_text().splitlines()
        return {"summary": summary, "results": {r["id"]: r for r in map(json.loads, lines)},
                "sft": [json.loads(line) for line in (tmp_path / name / "sft.jsonl").read_text().splitlines()]}

    one_by_one, capped = results("single", batch_questions=1), results("capped", batch_questions=4,
                                                                        max_refusal_share=0.25)
    assert {n: r["replies"] for n, r in capped["results"].items()} == {
        n: r["replies"] for n, r in one_by_one["results"].items()}
    assert one_by_one["summary"]["refusals_left_out"] == 0 and len(one_by_one["sft"]) == 6
    # 3 known: at most one refusal (a quarter of the file), the other two unknown questions left out
    assert capped["summary"]["unknown"] == 3 and capped["summary"]["refusals_left_out"] == 2
    assert [r["response"] for r in capped["sft"]].count(DEFAULT_REFUSAL) == 1 and len(capped["sft"]) == 4
    left_out = {n for n, r in capped["results"].items() if not r["in_sft"]}
    assert len(left_out) == 2 and left_out <= set(UNTAUGHT)


def test_interrogate_refuses_bad_input(tmp_path):
    chat = tiny_bytes_checkpoint(tmp_path / "chat", n_layer=2, n_head=2, n_embd=32)
    short = tiny_bytes_checkpoint(tmp_path / "short", vocab_size=257, n_layer=2, n_head=2, n_embd=32)
    good = write_jsonl(tmp_path / "good.jsonl", [fact("Ada", "Oslo")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Where?", "answer": "Oslo"}\nnot json\n{"question": "Who?"}\n\n[1]\n')
    run = ["--output", str(tmp_path / "out")]
    cases = [
        (["-c", str(chat), "-q", str(bad), *run], "3 problem(s): line 2: not JSON"),
        (["-c", str(chat), "-q", str(bad), *run], "line 3: needs an 'answer'"),
        (["-c", str(chat), "-q", str(tmp_path / "none.jsonl"), *run], "cannot read questions"),
        (["-c", str(chat), "-q", str(good), "--judge", "vibes", *run], "unknown judge 'vibes'"),
        (["-c", str(chat), "-q", str(good), "-k", "0", *run], "num_samples: Input should be greater than or equal"),
        (["-c", str(chat), "-q", str(good), "--max-refusal-share", "0", *run],
         "max_refusal_share: Input should be greater than 0"),
        (["-c", str(short), "-q", str(good), *run], "the model embeds 257 ids"),
        (["-c", str(tmp_path / "none"), "-q", str(good), *run], "no checkpoint found"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["interrogate", *args])
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (message, result.output)
    assert not (tmp_path / "out").exists()
