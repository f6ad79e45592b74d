"""Prompt files for ranking sessions: both line forms, ids given or from content, malformed lines with numbers."""

from __future__ import annotations

import json
import logging

from fineforge.tasks.preferences.prompts import read_prompts

SYSTEM_AND_USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]


def write_lines(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_messages_and_plain_prompts_with_given_or_derived_ids(tmp_path):
    path = write_lines(tmp_path / "prompts.jsonl", [
        {"id": "p-1", "prompt": "Name a prime number."},
        {"messages": SYSTEM_AND_USER},
        {"id": 7, "messages": [{"role": "user", "content": "Say hi."}]},
    ])
    result = read_prompts(path)
    assert not result.malformed
    assert [p.id for p in result.prompts][::2] == ["p-1", "7"]
    assert result.prompts[0].messages == [{"role": "user", "content": "Name a prime number."}]
    assert result.prompts[1].messages == SYSTEM_AND_USER
    derived = result.prompts[1].id
    assert derived.startswith("prompt-") and len(derived) == len("prompt-") + 16
    # the same content elsewhere gets the same id; other content another one
    again = read_prompts(write_lines(tmp_path / "again.jsonl", [{"messages": SYSTEM_AND_USER}, {"prompt": "x"}]))
    assert again.prompts[0].id == derived != again.prompts[1].id


def test_malformed_lines_are_counted_skipped_and_logged_with_line_numbers(tmp_path, caplog):
    path = write_lines(tmp_path / "prompts.jsonl", [
        {"id": "p-1", "prompt": "fine"},
        "{not json",
        {"id": "p-2"},
        {"prompt": "a", "messages": SYSTEM_AND_USER},
        {"messages": [{"role": "robot", "content": "beep"}]},
        {"messages": [*SYSTEM_AND_USER, {"role": "assistant", "content": "4"}]},
        {"prompt": "   "},
        {"id": "p-1", "prompt": "another text, the same id"},
        {"id": True, "prompt": "a flag is not an id"},
        "",
        {"prompt": "also fine"},
    ])
    with caplog.at_level(logging.WARNING):
        result = read_prompts(path)
    assert len(result.prompts) == 2
    assert [(bad.line, bad.reason.split(" (")[0].split(";")[0]) for bad in result.malformed] == [
        (2, "not JSON"),
        (3, "needs either 'messages' or 'prompt'"),
        (4, "needs either 'messages' or 'prompt'"),
        (5, "message 0 has role 'robot'"),
        (6, "the last message is the assistant's: a prompt ends where the reply begins"),
        (7, "'prompt' must be a non-empty text"),
        (8, "id 'p-1' repeats line 1"),
        (9, "'id' must be a non-empty string or an integer, got True"),
    ]
    assert [r.getMessage().split(" skipped")[0] for r in caplog.records] == [f"{path} line {n}" for n in range(2, 10)]
