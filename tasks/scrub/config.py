"""The scrub stage's config: which personal data datatrove's `PIIFormatter` replaces."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

SCRUBBED = "scrubbed"  # the stage's output folder, and the corpus that tokenization reads by default


class ScrubConfig(BaseModel):
    """datatrove `PIIFormatter`: replace e-mail addresses and public IPv4 addresses (FineWeb's setting)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    remove_emails: bool = True
    remove_ips: bool = True
    only_remove_public_ips: bool = True


def build_scrub_steps(config: ScrubConfig) -> list[Any]:
    """datatrove PipelineSteps of the PII scrub (e-mails, public IPv4), or none when it is switched off."""
    from datatrove.pipeline.formatters import PIIFormatter

    if not config.enabled:
        return []
    return [PIIFormatter(**config.model_dump(exclude={"enabled"}))]
