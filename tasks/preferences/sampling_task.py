"""The Prefect task of the `collect_rankings` flow that samples a prompt's completions (kept apart from
`sampling`, so that `fineforge rank` in a terminal never imports Prefect)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from fineforge.tasks.preferences.prompts import RankingPrompt
from fineforge.tasks.preferences.sampling import CompletionSampler, SampledPrompt


@task(name="sample-completions", task_run_name="sample {prompt.id}", cache_policy=NO_CACHE)
def sample_completions(sampler: CompletionSampler, prompt: RankingPrompt) -> SampledPrompt:
    """Sample one prompt's completions (a task run of its own, with its time, in the flow run)."""
    return sampler.sample(prompt)
