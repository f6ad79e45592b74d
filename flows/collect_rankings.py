"""The `collect_rankings` flow: people rank K completions per prompt in the Prefect UI.

For each unranked prompt the run samples K completions from a checkpoint (once: they are stored), then pauses
with a form (`pause_flow_run(wait_for_input=...)`): the description shows the prompt and the numbered
completions as markdown, the person enters an order ("2,1,3,4") or the best and the worst, or skips, or stops.
Each valid answer is appended to the rankings dataset the moment the run resumes; an invalid one pauses the
run again with the reason at the top of the form. Cancelling the run loses nothing already submitted; a new
run resumes at the first unranked prompt. The run ends with a summary artifact (`rankings-summary`).

No `from __future__ import annotations` here: Prefect builds the run form from the real annotations.
"""

import logging
from typing import Annotated

from prefect import flow, pause_flow_run
from prefect.artifacts import create_markdown_artifact
from prefect.input import RunInput
from pydantic import Field

from fineforge.tasks.preferences.config import BEST_WORST, RankingConfig
from fineforge.tasks.preferences.sampling import CompletionSampler
from fineforge.tasks.preferences.sampling_task import sample_completions
from fineforge.tasks.preferences.session import RANK, SKIP, STOP, Answer, Question, SessionSummary, run_session

log = logging.getLogger(__name__)

SUMMARY_ARTIFACT = "rankings-summary"

JUDGE_HELP = "Your name, stored with the judgement."
Skip = Annotated[bool, Field(description="Skip this prompt: it stays unranked and a later run offers it again.")]
Stop = Annotated[bool, Field(description="End the session here (everything submitted is kept).")]


class CollectRankingsConfig(RankingConfig):
    """A ranking session in the Prefect UI: the session's settings and how long a paused run waits."""

    pause_timeout_seconds: int = Field(86_400, ge=1, description="How long a run waits for an answer before "
                                       "it fails (the judgements already submitted are kept).")
    poll_seconds: int = Field(5, ge=1, description="How often a paused run checks whether it was answered.")


def _action(skip: bool, stop: bool) -> str:
    return STOP if stop else SKIP if skip else RANK


class OrderForm(RunInput):
    """Rank every completion, best first."""

    judge: str = Field("", description=JUDGE_HELP)
    order: str = Field("", description="The completion numbers, best first, e.g. 2,1,3,4")
    skip: Skip = False
    stop: Stop = False

    def answer(self) -> Answer:
        return Answer(_action(self.skip, self.stop), self.judge, self.order)


class BestWorstForm(RunInput):
    """Pick the best and the worst completion."""

    judge: str = Field("", description=JUDGE_HELP)
    best: int | None = Field(None, description="Number of the best completion.")
    worst: int | None = Field(None, description="Number of the worst completion.")
    skip: Skip = False
    stop: Stop = False

    def answer(self) -> Answer:
        return Answer(_action(self.skip, self.stop), self.judge, (self.best, self.worst))


def quoted(text: str) -> str:
    """Text as a markdown block quote (rendered as markdown, but visibly one completion)."""
    if not text.strip():
        return "> *(empty)*"
    return "\n".join(f"> {line}" for line in text.split("\n"))


def question_markdown(question: Question) -> str:
    """The form's description: the reason a previous answer was rejected, the prompt, the completions."""
    sampled = question.sampled
    parts = [f"### Prompt {question.position} of {question.total} in this run (`{sampled.prompt_id}`)"]
    if question.error:
        parts.append(f"**Not stored: {question.error}.** Correct the answer and submit again.")
    parts += [f"**{message['role']}**\n\n{quoted(message['content'])}" for message in sampled.prompt]
    parts += [f"#### Completion {n}\n\n{quoted(c.text)}" for n, c in enumerate(sampled.completions, 1)]
    if question.mode == BEST_WORST:
        parts.append("Enter the numbers of the **best** and the **worst** completion.")
    else:
        example = ",".join(str(n) for n in range(len(sampled.completions), 0, -1))
        parts.append(f"Enter **every** completion number, best first, e.g. `{example}`.")
    return "\n\n".join(parts)


def summary_markdown(summary: SessionSummary) -> str:
    """The session's summary as a markdown table."""
    rows = "\n".join(f"| {name} | {value} |" for name, value in summary.counts().items())
    return f"| | |\n|---|---|\n{rows}"


@flow(name="collect_rankings", description="People rank sampled completions in the Prefect UI; each judgement "
      "is stored at once in the rankings dataset.")
def collect_rankings(config: CollectRankingsConfig) -> dict:
    """Pause for a judgement of each unranked prompt's completions; publish what the session did."""
    sampler = CompletionSampler(config)  # a bad tokenizer fails here, before anything is sampled

    def ask(question: Question) -> Answer:
        form = BestWorstForm if question.mode == BEST_WORST else OrderForm
        # the name a person entered last is prefilled; a Field keeps its help text in the form
        prefilled = form.with_initial_data(description=question_markdown(question),
                                           judge=Field(question.judge, description=JUDGE_HELP))
        submitted = pause_flow_run(wait_for_input=prefilled, timeout=config.pause_timeout_seconds,
                                   poll_interval=config.poll_seconds)
        return submitted.answer()

    summary = run_session(config, ask, lambda prompt: sample_completions(sampler, prompt))
    create_markdown_artifact(summary_markdown(summary), key=SUMMARY_ARTIFACT,
                             description=f"Ranking session into {config.dataset}")
    log.info("rankings: %s", summary.counts())
    return summary.counts()
