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

    class PerDocumentPIIFormatter(PIIFormatter):
        """datatrove's PIIFormatter with its cycle of replacements restarted for each document, so that a
        document's scrubbed text depends on that document alone: datatrove's cycle runs on across the documents
        of a task, and their order within a part after a Spark shuffle varies from run to run (a lost executor
        changes it), which made the same corpus scrub differently."""

        def format(self, text: str) -> str:
            self.emails_replacer._replace_i = self.ip_replacer._replace_i = 0  # datatrove's cycle position
            return super().format(text)

    if not config.enabled:
        return []
    return [PerDocumentPIIFormatter(**config.model_dump(exclude={"enabled"}))]
