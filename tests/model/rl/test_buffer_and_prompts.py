"""The pieces of the RL stage on hand-checked cases: prompt records, pass@k, and the roll-out buffer's micro-batches
whose losses add up exactly to the loss of their whole optimizer step."""

from __future__ import annotations

import json

import pytest
import torch

from fineforge.model.rl.buffer import (
    BufferLayout,
    TrainingRow,
    local_step_totals,
    micro_batches,
    pad_rows,
    step_order,
)
from fineforge.model.rl.config import GRPOConfig
from fineforge.model.rl.evaluation import pass_at_k
from fineforge.model.rl.loss import policy_loss
from fineforge.model.rl.prompts import PromptSetError, read_prompt_set
from fineforge.model.verifiers import check_prompt_set, get_verifier


def test_pass_at_k_by_hand():
    assert pass_at_k(4, 1, 1) == 0.25
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 1, 4) == 1.0 and pass_at_k(8, 6, 3) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_conversation_records_and_real_gsm8k_lines_become_prompts(tmp_path, shared_data):
    records = tmp_path / "train.jsonl"
    records.write_text(json.dumps({"id": "wp-1", "answer": "3", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 1 + 2?"},
        {"role": "assistant", "content": "1 + 2 = 3.\nThe answer is 3."}]}) + "\n")
    (prompt,) = read_prompt_set(records, "field")
    assert [m.role for m in prompt.messages.messages] == ["system", "user"]  # the reference reply is not shown
    assert prompt.metadata["answer"] == "3"

    gsm8k = read_prompt_set(shared_data / "gsm8k" / "test.jsonl", "field")
    assert len(gsm8k) == 1319
    assert gsm8k[1].messages.messages[0].content.startswith("A robe takes 2 bolts")
    check_prompt_set(get_verifier("gsm8k"), [p.metadata for p in gsm8k])


def test_bad_prompt_lines_are_named_not_skipped(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok?", "answer": "1"}\n[1, 2]\n{"question": "x", "answer": "1"\n'
                   '{"messages": [{"role": "assistant", "content": "hi"}], "answer": "1"}\n{"answer": "2"}\n')
    expected = (r"prompts: .*bad.jsonl: 4 bad line\(s\): line 2: a JSON list, not an object; line 3: Expecting .*; "
                r"line 4: no turn before the assistant's reply; \.\.\.")
    with pytest.raises(PromptSetError, match=expected):
        read_prompt_set(bad, "prompts")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(PromptSetError, match="no prompts in the file"):
        read_prompt_set(empty, "prompts")
    with pytest.raises(PromptSetError, match="cannot read the prompt set"):
        read_prompt_set(tmp_path / "missing.jsonl", "prompts")


def rows_of(lengths: list[tuple[int, int]], seed: int = 0) -> list[TrainingRow]:
    """Rows of (prompt length, completion length) with random tokens, log-probs and advantages; the last token of
    every third row is a tool output (weight 0)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i, (p, c) in enumerate(lengths):
        weights = torch.ones(c)
        if i % 3 == 0:
            weights[-1] = 0.0
        rows.append(TrainingRow(torch.randint(0, 50, (p,), generator=g).tolist(),
                                torch.randint(0, 50, (c,), generator=g).tolist(), weights,
                                float(torch.randn(1, generator=g)), -torch.rand(c, generator=g)))
    return rows


@pytest.mark.parametrize("normalisation", ["token", "sequence", "constant"])
def test_micro_batch_losses_add_up_to_the_whole_steps_loss(normalisation):
    """Two ranks' rows, two optimizer steps per pass, micro-batches of 2: each step's micro-batch losses, scaled as
    the stage returns them and averaged as the trainer and DDP average them, equal that step's loss on all its rows."""
    config = GRPOConfig(normalisation=normalisation, constant_normaliser=8 if normalisation == "constant" else None)
    layout = BufferLayout(epochs=1, minibatches=2, micro_batch_size=2, world_size=2)
    ranks = [rows_of([(3, 4), (5, 2), (2, 6), (4, 1)], seed=0), rows_of([(2, 3), (6, 5), (3, 3), (1, 2)], seed=1)]
    ranks[1][2].weights.zero_()  # a row of a skipped group: no weight anywhere
    steps = [step_order(4, layout, seed=rank) for rank in range(2)]
    totals = sum(local_step_totals(rows, order) for rows, order in zip(ranks, steps, strict=True))

    def current(old_logp: torch.Tensor) -> torch.Tensor:  # the policy after some updates: moved token by token
        return old_logp + 0.1 * torch.cos(7 * old_logp)

    for step in range(2):
        averaged = 0.0
        for rows, order in zip(ranks, steps, strict=True):
            batches = micro_batches(rows, order, totals, layout, pad_id=0)
            micro_steps = layout.micro_steps(len(rows))
            assert len(batches) == 2 * micro_steps == 2
            batch = batches[step]
            out = policy_loss(current(batch.old_logp), batch.old_logp, batch.advantages, batch.weights, config,
                              batch_tokens=batch.step_tokens, batch_sequences=batch.step_sequences)
            averaged += float(out.loss * batch.scale) / micro_steps / layout.world_size
        whole = [rows[i] for rows, order in zip(ranks, steps, strict=True) for i in order[step]]
        _, weights, old, _ = pad_rows(whole, pad_id=0)
        advantages = torch.tensor([r.advantage for r in whole])
        kept = weights.any(dim=1)  # a row without weight is no completion of the step
        expected = policy_loss(current(old)[kept], old[kept], advantages[kept], weights[kept], config).loss
        assert averaged == pytest.approx(float(expected), rel=1e-5), step


def test_step_order_passes_over_every_row_each_epoch():
    layout = BufferLayout(epochs=2, minibatches=2, micro_batch_size=1, world_size=1)
    steps = step_order(6, layout, seed=3)
    assert len(steps) == 4 and all(len(s) == 3 for s in steps)
    assert sorted(steps[0] + steps[1]) == sorted(steps[2] + steps[3]) == list(range(6))
    assert steps == step_order(6, layout, seed=3) and steps != step_order(6, layout, seed=4)
