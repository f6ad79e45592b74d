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


def test_a_documents_scrub_does_not_depend_on_the_documents_before_it():
    """The same document scrubs to the same text whatever the task saw first (Spark's order within a part is not
    stable across runs)."""
    (pii,) = build_scrub_steps(ScrubConfig())
    first = "Mail a@uni-example.de, b@uni-example.de or c@uni-example.de from 8.8.8.8."
    other = "Contact: x@shop-example.com"
    alone = [d.text for d in pii([Document(text=first, id="1")])]
    (pii_again,) = build_scrub_steps(ScrubConfig())
    after_other = [d.text for d in pii_again([Document(text=other, id="0"), Document(text=first, id="1")])][1:]
    assert after_other == alone
    assert alone[0].count("email@example.com") == 2 and "firstname.lastname@example.org" in alone[0]  # cycles within
