"""The interrogation's config, work and bookkeeping (no Prefect here: the CLI checks a config before Prefect starts).

`run_interrogation(config)` loads the checkpoint, asks every question (`model/interrogation.py`) and writes into
`output_dir`:
- `sft.jsonl`: one conversation per question in the conversation stage's JSONL form ({"id", "prompt",
  "response", "answer"?}): the known reply, or the refusal (at most `max_refusal_share` of the file: the
  other unknown questions are left out); use it as a `jsonl` source of the SFT data, next to the base SFT's;
- `results.jsonl`: per question its verdict, share of correct replies, the replies and their judgements, and
  whether it is in sft.jsonl;
- `summary.json`: the counts.
`record_interrogation` keeps them in an MLflow run: settings as params, the counts and the per-question share
of correct replies (step = question number) as metrics, the per-question table and the files as artifacts.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

log = logging.getLogger(__name__)

SFT_FILE, RESULTS_FILE, SUMMARY_FILE = "sft.jsonl", "results.jsonl", "summary.json"
EXPERIMENT = "interrogate"
TABLE_REPLY_CHARS = 200  # a reply's characters shown in the per-question tables
MLFLOW_BATCH_METRICS = 1000  # MLflow's limit of metrics per log_batch call


class InterrogationConfig(BaseModel):
    """Interrogate a chat checkpoint with questions of known answers and write SFT data from its verdicts."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str = Field(..., description="An SFT (or later) checkpoint folder, or a run folder (its newest).")
    questions: str = Field(..., description='JSONL: {"question", "answer", "id"?, "response"?} per line.')
    output_dir: str = Field(..., description="sft.jsonl, results.jsonl and summary.json go here.")
    num_samples: int = Field(4, ge=1, le=64, description="Replies sampled per question (k).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the replies.")
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    max_new_tokens: int = Field(64, ge=1, description="A reply longer than this is unfinished, and counts as wrong.")
    judge: str = Field("normalised_match", description="normalised_match, exact_match, a registered judge, or "
                       "verifier:NAME (e.g. verifier:gsm8k).")
    refuse_at_most: float = Field(0.0, ge=0, lt=1, description="A question whose share of correct replies is at "
                                  "most this gets the refusal (0: only when all k are wrong).")
    max_refusal_share: float = Field(1.0, gt=0, le=1, description="At most this share of sft.jsonl are refusals "
                                     "(Llama 3 keeps them a minority): the others are a seeded sample of the unknown "
                                     "questions; 1: every unknown question is refused.")
    batch_questions: int = Field(16, ge=1, description="Questions sampled together in one batch (x k rows).")
    refusal: str = Field("I'm sorry, I don't believe I know.", min_length=1, description="The refusal's text.")
    seed: int | None = Field(0, description="Replies are reproducible per question id; None: fresh randomness.")
    device: str = Field("cpu", description="Torch device: cpu, cuda, cuda:1, ...")
    tokenizer_dir: str | None = Field(None, description="Vocabulary files of a published encoding.")
    experiment: str = Field(EXPERIMENT, min_length=1, description="MLflow experiment.")

    @field_validator("judge")
    @classmethod
    def _known_judge(cls, value: str) -> str:
        from fineforge.model.interrogation import get_judge

        get_judge(value)
        return value

    @model_validator(mode="after")
    def _inputs_usable(self) -> InterrogationConfig:
        """The checkpoint, its tokenizer with the chat tokens, and every question, checked before any sampling."""
        from fineforge.model.interrogation import read_questions

        checkpoint_tokenizer(self)
        read_questions(self.questions)
        return self


def checkpoint_tokenizer(config: InterrogationConfig):
    """The checkpoint's folder, metadata and tokenizer, refused (ValueError) unless it is a chat model's."""
    from fineforge.model.chat import require_chat_tokens
    from fineforge.model.checkpoint import find_checkpoint, read_meta
    from fineforge.model.tokenizer import load_tokenizer

    path = find_checkpoint(config.checkpoint)
    meta = read_meta(path)
    spec = (meta.get("tokenizer") or {}).get("spec")
    if not spec:
        raise ValueError(f"{path}: the checkpoint's metadata names no tokenizer")
    tokenizer = load_tokenizer(spec, config.tokenizer_dir)
    require_chat_tokens(tokenizer, meta["model"]["vocab_size"])
    if meta.get("stage") == "pretrain":
        log.warning("%s is a pretrained checkpoint: a base model does not answer questions; interrogate it after SFT",
                    path)
    return path, meta, tokenizer


@dataclass
class InterrogationReport:
    """What a run wrote and its counts."""

    output_dir: Path
    summary: dict
    rows: list[dict]  # per question, for tables


def run_interrogation(config: InterrogationConfig) -> InterrogationReport:
    """Ask every question, write sft.jsonl, results.jsonl and summary.json (each atomically) and return them."""
    from fineforge.model.checkpoint import load_model
    from fineforge.model.engine import SamplingConfig
    from fineforge.model.interrogation import Interrogator, get_judge, read_questions, sft_records

    path, meta, tokenizer = checkpoint_tokenizer(config)
    model, _ = load_model(path, device=config.device)
    sampling = SamplingConfig(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                              top_k=config.top_k, top_p=config.top_p, num_samples=config.num_samples, seed=config.seed)
    interrogator, judge = Interrogator(model, tokenizer, sampling), get_judge(config.judge)
    questions, started = read_questions(config.questions), time.perf_counter()
    results = interrogator.ask_all(questions, judge, config.batch_questions,
                                   lambda done: log.info("interrogated %d/%d questions", done, len(questions)))
    records, left_out = sft_records(results, config.refuse_at_most, config.refusal, config.max_refusal_share,
                                    config.seed)
    left_out_ids = set(left_out)
    details = [{**r.to_dict(config.refuse_at_most), "in_sft": r.question.id not in left_out_ids} for r in results]
    summary = interrogation_summary(details, time.perf_counter() - started)
    summary.update(checkpoint=str(path.resolve()), checkpoint_step=meta["step"], refusals_left_out=len(left_out))
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    write_jsonl(output / SFT_FILE, records)
    write_jsonl(output / RESULTS_FILE, details)
    write_text(output / SUMMARY_FILE, json.dumps(summary, indent=2))
    log.info("%d questions: %d known, %d unknown (%d of them left out of %s by max_refusal_share %s)",
             summary["questions"], summary["known"], summary["unknown"], len(left_out), SFT_FILE,
             config.max_refusal_share)
    return InterrogationReport(output, summary, [table_row(d) for d in details])


def interrogation_summary(details: list[dict], seconds: float) -> dict:
    """Counts over the per-question results: known and refused questions, mean share of correct replies."""
    n = len(details)
    replies = sum(len(d["correct"]) for d in details)
    return {
        "questions": n,
        "known": sum(d["verdict"] == "known" for d in details),
        "unknown": sum(d["verdict"] == "unknown" for d in details),
        "mean_correct_fraction": sum(d["correct_fraction"] for d in details) / n,
        "unfinished_replies": replies - sum(sum(d["finished"]) for d in details),
        "replies": replies,
        "seconds": round(seconds, 2),
    }


def table_row(detail: dict) -> dict:
    """One question as a row of the Prefect and MLflow tables (its first reply, cut)."""
    return {"id": detail["id"], "question": detail["question"], "answer": detail["answer"],
            "verdict": detail["verdict"], "correct_fraction": detail["correct_fraction"],
            "first_reply": detail["replies"][0][:TABLE_REPLY_CHARS]}


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_jsonl(path: Path, records: list[dict]) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def record_interrogation(config: InterrogationConfig, report: InterrogationReport, tracking_uri: str) -> str:
    """An MLflow run of the interrogation: settings, counts, per-question share of correct replies, the table
    and the files; returns its id."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from fineforge.model.tracking import experiment_id

    client = MlflowClient(tracking_uri)
    run_id = client.create_run(experiment_id(client, config.experiment, tracking_uri), run_name=Path(
        config.output_dir).name, tags={"fineforge.stage": "interrogate"}).info.run_id
    now = int(time.time() * 1000)
    numbers = {k: float(v) for k, v in report.summary.items() if isinstance(v, int | float)}
    metrics = [Metric(k, v, now, 0) for k, v in numbers.items()]
    metrics += [Metric("question_correct_fraction", row["correct_fraction"], now, number)
                for number, row in enumerate(report.rows)]
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in config.model_dump().items()])
    for start in range(0, len(metrics), MLFLOW_BATCH_METRICS):
        client.log_batch(run_id, metrics=metrics[start : start + MLFLOW_BATCH_METRICS])
    client.log_table(run_id, {k: [row[k] for row in report.rows] for k in report.rows[0]}, "results_table.json")
    for name in (SFT_FILE, RESULTS_FILE, SUMMARY_FILE):
        client.log_artifact(run_id, str(report.output_dir / name))
    client.set_terminated(run_id)
    return run_id
