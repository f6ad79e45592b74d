"""A ranking session: for each unranked prompt, show a person its K completions, take their judgement and
append it to the rankings dataset at once. How the person is asked (a paused Prefect flow's form, the terminal)
is the caller's `ask` function; everything else, the same for both, is here.

A person answers with the completions' numbers as shown (1 to K): in `order` mode every number, best first
("2,1,3,4"); in `best_worst` mode the best and the worst ("2,4"), stored as a 2-way ranking of those two.
They may skip a prompt (it stays unranked: a later session offers it again) or stop the session. An answer
that names an unknown completion, repeats one or leaves one out is rejected, and the same prompt is asked
again with the reason. Prompts already ranked are passed over, so a re-run resumes at the first unranked one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from fineforge.tasks.preferences.config import BEST_WORST, RankingConfig
from fineforge.tasks.preferences.prompts import RankingPrompt, read_prompts
from fineforge.tasks.preferences.rankings import InvalidJudgement, Judgement, RankingsDataset
from fineforge.tasks.preferences.sampling import CompletionSampler, SampledPrompt, SampleStore

log = logging.getLogger(__name__)

RANK, SKIP, STOP = "rank", "skip", "stop"
NUMBER_SEPARATORS = re.compile(r"[\s,;>]+")


class EmptyPromptsFile(ValueError):
    """A prompts file without a single usable prompt."""


@dataclass(frozen=True)
class Answer:
    """What a person submitted: rank (with their name and the completion numbers picked), skip, or stop.
    `picks` is the text they typed ("2,1,3") or the numbers of a form's fields (None where left empty)."""

    action: str = RANK
    judge: str = ""
    picks: str | Sequence[int | None] = ""


@dataclass(frozen=True)
class Question:
    """One prompt put to the person: its completions, its place in the session, the name to prefill, and why
    their previous answer to it was rejected (None the first time)."""

    sampled: SampledPrompt
    position: int  # 1-based, among the prompts of this session
    total: int
    mode: str
    judge: str
    error: str | None = None


Ask = Callable[[Question], Answer]
Sample = Callable[[RankingPrompt], SampledPrompt]


@dataclass
class SessionSummary:
    """What a session did; `remaining` counts the prompts of the file still unranked at its end."""

    dataset: str
    prompts: int = 0
    malformed_prompt_lines: int = 0
    already_ranked: int = 0
    offered: int = 0
    ranked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unrankable: list[str] = field(default_factory=list)
    rejected_answers: int = 0
    stopped: bool = False
    remaining: int = 0
    judgements_in_dataset: int = 0

    def counts(self) -> dict[str, int | bool | str]:
        """The summary as name -> value (the dataset's path, then counts: lists as their lengths)."""
        return {name: len(value) if isinstance(value, list) else value for name, value in vars(self).items()}


def picked_numbers(picks: str | Sequence[int | None], count: int) -> list[int]:
    """The completion numbers of an answer, each checked to be one of 1..count; the reason when not."""
    if isinstance(picks, str):
        items: Sequence[object] = [item for item in NUMBER_SEPARATORS.split(picks.strip()) if item]
    else:
        items = list(picks)
    numbers = []
    for item in items:
        if item is None:
            raise InvalidJudgement("choose both the best and the worst completion")
        if isinstance(item, bool) or not (isinstance(item, int) or (isinstance(item, str) and item.isdigit())):
            raise InvalidJudgement(f"{item!r} is not a completion number (1 to {count})")
        if not 1 <= int(item) <= count:
            raise InvalidJudgement(f"there is no completion {item}: the completions are numbered 1 to {count}")
        numbers.append(int(item))
    return numbers


def judgement_of(answer: Answer, sampled: SampledPrompt, mode: str) -> Judgement:
    """The judgement an answer makes of a prompt's completions; an InvalidJudgement says what is wrong."""
    count = len(sampled.completions)
    if not answer.judge.strip():
        raise InvalidJudgement("enter your name as the judge")
    numbers = picked_numbers(answer.picks, count)
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    if repeated:
        raise InvalidJudgement(f"completion {repeated[0]} is given more than one place")
    if mode == BEST_WORST:
        if len(numbers) != 2:
            raise InvalidJudgement(f"give the best and the worst completion (two numbers), got {len(numbers)}")
        completions = [sampled.completions[n - 1] for n in numbers]
    else:
        missing = sorted(set(range(1, count + 1)) - set(numbers))
        if missing:
            raise InvalidJudgement(f"rank every completion, best first; not ranked: {', '.join(map(str, missing))}")
        completions = list(sampled.completions)
    order = [sampled.completions[n - 1].id for n in numbers]
    return Judgement.create(sampled.prompt_id, sampled.prompt, [(c.id, c.text) for c in completions], order,
                            answer.judge.strip())


def _judge_prompt(question: Question, ask: Ask, dataset: RankingsDataset, summary: SessionSummary) -> Answer:
    """Ask until the answer is a skip, a stop, or a valid judgement, which is then stored before returning."""
    while True:
        answer = ask(question)
        if answer.action in (SKIP, STOP):
            return answer
        try:
            judgement = judgement_of(answer, question.sampled, question.mode)
        except InvalidJudgement as error:
            summary.rejected_answers += 1
            log.info("prompt %s: answer rejected: %s", question.sampled.prompt_id, error)
            question = replace(question, error=str(error), judge=answer.judge)
            continue
        dataset.append_judgement(judgement)
        log.info("prompt %s ranked by %s: %s", judgement.prompt_id, judgement.judge, ", ".join(judgement.order))
        return answer


def run_session(config: RankingConfig, ask: Ask, sample: Sample | None = None) -> SessionSummary:
    """Offer each unranked prompt (at most `max_prompts`) to `ask`, storing each judgement as it comes.
    Prompts never sampled are sampled by `sample` (default: a CompletionSampler of the config's checkpoint)."""
    prompts_file = read_prompts(config.prompts)
    if not prompts_file.prompts:
        raise EmptyPromptsFile(f"{config.prompts}: no usable prompts ({len(prompts_file.malformed)} malformed lines)")
    sample = sample or CompletionSampler(config).sample
    dataset, store = RankingsDataset(config.dataset), SampleStore(config.samples_path)
    ranked_before = dataset.ranked_prompt_ids()
    unranked = [p for p in prompts_file.prompts if p.id not in ranked_before]
    offered = unranked[: config.max_prompts]
    summary = SessionSummary(str(config.dataset), len(prompts_file.prompts), len(prompts_file.malformed),
                             len(prompts_file.prompts) - len(unranked), len(offered))
    judge = config.judge
    for position, prompt in enumerate(offered, 1):
        sampled = store.get(prompt) or store.add(sample(prompt))
        if len(sampled.completions) < 2:
            log.warning("prompt %s: fewer than 2 distinct completions; nothing to rank", prompt.id)
            summary.unrankable.append(prompt.id)
            continue
        answer = _judge_prompt(Question(sampled, position, len(offered), config.mode, judge), ask, dataset, summary)
        if answer.action == STOP:
            summary.stopped = True
            break
        if answer.action == SKIP:
            summary.skipped.append(prompt.id)
        else:
            summary.ranked.append(prompt.id)
            judge = answer.judge.strip()
    dataset.refresh()
    ranked_now = dataset.ranked_prompt_ids()
    summary.remaining = sum(p.id not in ranked_now for p in prompts_file.prompts)
    summary.judgements_in_dataset = len(dataset)
    return summary
