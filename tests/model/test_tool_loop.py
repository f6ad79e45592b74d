"""The tool loop on a model trained to call tools, with the real Python sandbox and search index: calls run,
their output is fed back with the cache kept and masked out of the loss, other rows keep sampling meanwhile,
and whatever a tool does never stops the engine."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from fineforge.model.chat import ChatTemplate
from fineforge.model.engine import LENGTH, STOP, UNCLOSED_TOOL_CALL, Engine, Request, SamplingConfig
from fineforge.model.tokenizer import CODE_END, CODE_START, IM_END, OUTPUT_END, OUTPUT_START
from fineforge.model.tool_loop import ToolLoop, ToolLoopConfig
from fineforge.model.tool_spans import MlflowToolSpans
from fineforge.model.tools.calculator import calculator
from fineforge.model.tools.sandbox import PythonSandbox
from fineforge.tasks.search.query import CorpusSearch
from testkit.tool_caller import (
    CRASH_QUESTION,
    PLAIN_QUESTION,
    PYTHON_QUESTION,
    SEARCH_QUESTION,
    TURNS,
    TWO_CALLS_QUESTION,
    conversation,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def setup(tool_caller):
    model, tokenizer = tool_caller
    template = ChatTemplate(tokenizer)
    config = SamplingConfig(max_new_tokens=90, temperature=0, stop_tokens=(tokenizer.encode_special(IM_END),))
    return Engine(model, tokenizer.vocab_size), tokenizer, template, config


def requests(template: ChatTemplate, *questions: str) -> list[Request]:
    return [Request(template.render_prompt(conversation(q))) for q in questions]


@pytest.fixture(scope="module")
def sandbox() -> PythonSandbox:
    return PythonSandbox()


def slow_calculator(code: str) -> str:
    time.sleep(1.0)
    return calculator(code)


def aborting_interpreter(code: str) -> str:
    """Runs the code in a Python process that dies of SIGABRT, as a crashed sandbox would."""
    done = subprocess.run([sys.executable, "-c", "import os; os.abort()"], input=code, capture_output=True, text=True,
                          check=True)
    return done.stdout


def test_calls_run_and_their_output_is_fed_back(setup, sandbox):
    engine, tokenizer, template, config = setup
    tools = ToolLoop({"python": sandbox}, tokenizer)  # no search tool here
    questions = list(TURNS)
    out = engine.generate_batch(requests(template, *questions), config, tools=tools)
    texts = {q: tokenizer.decode(c.tokens) for q, c in zip(questions, out, strict=True)}
    # the model goes on after the output the runtime pasted in, with the cache kept
    for question in (PYTHON_QUESTION, TWO_CALLS_QUESTION, PLAIN_QUESTION, CRASH_QUESTION):
        assert texts[question] == TURNS[question]  # the crash's output is the sandbox's verdict
        assert out[questions.index(question)].finish_reason == STOP
    # a tool missing from the registry is an error text the model sees
    missing = "error: there is no search tool here (available tools: python)"
    assert f"{OUTPUT_START}{missing}{OUTPUT_END}" in texts[SEARCH_QUESTION]

    python = out[questions.index(PYTHON_QUESTION)]
    (call,) = python.tool_calls
    assert (call.name, call.input, call.output, call.error, call.truncated) == ("python", "print(17*3)", "51", False,
                                                                                 False)
    assert 0 < call.seconds < 30
    # the output block, markers included, is out of the loss; everything the model sampled is in
    block = tokenizer.encode_with_special(f"{OUTPUT_START}51{OUTPUT_END}")
    start = python.tokens.index(block[0])
    assert python.tokens[start : start + len(block)] == block
    assert python.loss_mask == [1] * start + [0] * len(block) + [1] * (len(python.tokens) - start - len(block))
    assert [c.input for c in out[questions.index(TWO_CALLS_QUESTION)].tool_calls] == ["print(6*7)", "print(2**10)"]


def test_each_row_gets_what_it_gets_alone_with_or_without_the_cache(setup, sandbox, search_workdir):
    engine, tokenizer, template, config = setup
    tools = ToolLoop({"python": sandbox, "search": CorpusSearch(search_workdir)}, tokenizer)
    batch = requests(template, *TURNS, PYTHON_QUESTION)
    cached = engine.generate_batch(batch, config, tools=tools)
    plain = engine.generate_batch(batch, SamplingConfig(**{**config.__dict__, "use_kv_cache": False}), tools=tools)
    assert [c.tokens for c in cached] == [c.tokens for c in plain]
    for request, completion in zip(batch, cached, strict=True):
        assert engine.generate_batch([request], config, tools=tools)[0].tokens == completion.tokens
    (search,) = cached[list(TURNS).index(SEARCH_QUESTION)].tool_calls
    assert search.output.startswith("[1] Escopete") and not search.error


def test_other_rows_keep_sampling_while_a_tool_runs(setup):
    engine, tokenizer, template, config = setup
    tools = ToolLoop({"python": slow_calculator}, tokenizer)
    events = [e for step in engine.stream_batch(requests(template, PYTHON_QUESTION, PLAIN_QUESTION), config,
                                                tools=tools) for e in step]
    output_at = next(i for i, e in enumerate(events) if e.inserted)
    plain_done_at = next(i for i, e in enumerate(events) if e.row == 1 and e.finish_reason)
    assert plain_done_at < output_at  # the plain row finished while the python call slept
    inserted = events[output_at]
    assert inserted.row == 0 and inserted.tool_call.seconds >= 1.0
    assert tokenizer.decode(inserted.tokens) == f"{OUTPUT_START}51{OUTPUT_END}"
    row0 = [t for e in events if e.row == 0 for t in e.tokens]
    assert tokenizer.decode(row0) == TURNS[PYTHON_QUESTION]


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        (aborting_interpreter, "error: the python tool failed: CalledProcessError: Command"),
        (lambda code: 51, "error: the python tool failed: TypeError: the tool returned int, not text"),
        (lambda code: time.sleep(5) or "late", "error: the python tool gave no answer within 0.5 s"),
    ],
    ids=["crashed-process", "not-text", "timeout"],
)
def test_tool_failures_are_text_the_model_sees(setup, tool, expected):
    engine, tokenizer, template, config = setup
    tools = ToolLoop({"python": tool}, tokenizer, ToolLoopConfig(timeout_s=0.5))
    # room for the error text (one token per byte) and more
    config = SamplingConfig(**{**config.__dict__, "max_new_tokens": 300})
    (out,) = engine.generate_batch(requests(template, PYTHON_QUESTION), config, tools=tools)
    (call,) = out.tool_calls
    assert call.error and call.output.startswith(expected)
    text = tokenizer.decode(out.tokens)
    assert f"{OUTPUT_START}{call.output}{OUTPUT_END}" in text
    assert not text.endswith(OUTPUT_END) and out.loss_mask[-1] == 1  # the model went on sampling after the error


def test_long_output_is_cut_to_its_token_budget_with_a_marker(setup):
    engine, tokenizer, template, config = setup
    tools = ToolLoop({"python": lambda code: "\n".join(map(str, range(1000)))}, tokenizer,
                     ToolLoopConfig(max_output_tokens=40))
    (out,) = engine.generate_batch(requests(template, PYTHON_QUESTION), config, tools=tools)
    (call,) = out.tool_calls
    assert call.truncated and len(call.output) > 1000
    text = tokenizer.decode(out.tokens)
    shown = text[text.index(OUTPUT_START) + len(OUTPUT_START) : text.index(OUTPUT_END)]
    assert len(tokenizer.encode(shown)) == 40 and shown.endswith("\n[output cut to 40 tokens]")
    assert shown.startswith("0\n1\n2\n")


def test_a_call_that_never_closes_ends_its_row(setup):
    engine, tokenizer, template, config = setup
    tools = ToolLoop({"python": calculator}, tokenizer, ToolLoopConfig(max_call_tokens=4))
    out = engine.generate_batch(requests(template, PYTHON_QUESTION, PLAIN_QUESTION), config, tools=tools)
    assert out[0].finish_reason == UNCLOSED_TOOL_CALL and not out[0].stopped and out[0].tool_calls == []
    assert tokenizer.decode(out[0].tokens) == f"{CODE_START}print"
    assert out[1].finish_reason == STOP
    # the budget running out inside a call says so too
    tools = ToolLoop({"python": calculator}, tokenizer)
    (cut,) = engine.generate_batch([Request(requests(template, PYTHON_QUESTION)[0].prompt, max_new_tokens=6)], config,
                                   tools=tools)
    assert cut.finish_reason == UNCLOSED_TOOL_CALL and len(cut.tokens) == 6


def test_inserted_output_counts_against_the_budget(setup):
    engine, tokenizer, template, config = setup
    tools = ToolLoop({"python": calculator}, tokenizer)
    call = f"{CODE_START}print(17*3){CODE_END}"
    budget = len(tokenizer.encode_with_special(call)) + 2  # room for <OUTPUT_START> and "5" only
    (out,) = engine.generate_batch(requests(template, PYTHON_QUESTION), SamplingConfig(
        **{**config.__dict__, "max_new_tokens": budget}), tools=tools)
    assert out.finish_reason == LENGTH and tokenizer.decode(out.tokens) == f"{call}{OUTPUT_START}5"
    assert out.loss_mask[-2:] == [0, 0]


def test_tool_calls_are_recorded_as_mlflow_trace_spans(setup, mlflow_uri, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    from fineforge.model.tracking import experiment_id

    engine, tokenizer, template, config = setup
    experiment = experiment_id(MlflowClient(mlflow_uri), "tool-spans", mlflow_uri)  # not ./mlruns of the cwd
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment)
    with mlflow.start_run(run_name="eval") as run:
        tools = ToolLoop({"python": calculator}, tokenizer, on_call=MlflowToolSpans())
        engine.generate_batch(requests(template, TWO_CALLS_QUESTION, PLAIN_QUESTION), config, tools=tools)
    traces = mlflow.search_traces(run_id=run.info.run_id, return_type="list", flush=True)
    spans = sorted((s for t in traces for s in t.data.spans), key=lambda s: s.start_time_ns)
    assert [(s.name, s.span_type, s.inputs, s.outputs) for s in spans] == [
        ("tool:python", "TOOL", {"input": "print(6*7)"}, {"output": "42"}),
        ("tool:python", "TOOL", {"input": "print(2**10)"}, {"output": "1024"}),
    ]
    assert all(s.attributes["error"] is False and s.attributes["seconds"] >= 0 for s in spans)
