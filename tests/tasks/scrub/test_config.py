"""The scrub's config and its datatrove step on real-looking text, no Spark."""

from __future__ import annotations

from datatrove.data import Document
from datatrove.pipeline.formatters import PIIFormatter

from fineforge.tasks.scrub.config import ScrubConfig, build_scrub_steps


def test_defaults_are_finewebs_settings_and_the_scrub_can_be_switched_off():
    (pii,) = build_scrub_steps(ScrubConfig())
    assert isinstance(pii, PIIFormatter) and pii.remove_emails and pii.remove_ips
    assert build_scrub_steps(ScrubConfig(enabled=False)) == []


def test_pii_scrub_replaces_emails_and_public_ips_only():
    (pii,) = build_scrub_steps(ScrubConfig())
    text = "Write to jane.doe@uni-example.de or call 8.8.8.8; the router is 192.168.1.1."
    (document,) = pii([Document(text=text, id="1")])
    assert "jane.doe@uni-example.de" not in document.text and "8.8.8.8" not in document.text
    assert "192.168.1.1" in document.text and "@example." in document.text
