"""The stage contract on its own: output path, atomic commit, skip when complete, leftovers of killed runs
removed, fingerprints that follow config and inputs. The stage here writes real document parts through the
one Parquet writer; it needs no Spark, which the contract does not either."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel

from fineforge.tasks.common.documents import DOCUMENT_SCHEMA, PartWriter, part_file_name
from fineforge.tasks.common.stage import (
    STATS_FILE,
    StageOutput,
    execute_stage,
    input_identity,
    load_output,
    stage_path,
)

ROOT = Path(__file__).resolve().parents[3]
STARTED = "started"  # written by a holding stage once it has begun writing


class LinesConfig(BaseModel):
    """The test stage's config: keep the lines of at least this many characters."""

    min_chars: int = 1
    fail_after_writing: bool = False
    hold_seconds: float = 0.0


@dataclass(frozen=True)
class LinesStage:
    """A real, small stage: each line of a text file becomes a document of its output."""

    config: LinesConfig
    inputs: list[Any]
    group: str = "dump-1"
    name: ClassVar[str] = "lines"
    runs: list[Path] = field(default_factory=list, compare=False)  # the temporary folders it wrote into

    def fingerprint_parts(self) -> list[Any]:
        return [input_identity(self.inputs), self.config.model_dump(mode="json")]

    def run(self, spark, output_dir: Path) -> dict[str, Any]:
        self.runs.append(output_dir)
        output_dir.mkdir()
        lines = Path(self.inputs[0]).read_text().splitlines()
        kept = [line for line in lines if len(line) >= self.config.min_chars]
        with PartWriter(output_dir / part_file_name(0)) as writer:
            for number, line in enumerate(kept):
                writer.write({"id": f"line-{number}", "text": line})
        (output_dir / STARTED).touch()
        if self.config.fail_after_writing:
            raise RuntimeError("the stage failed after writing its part")
        time.sleep(self.config.hold_seconds)
        return {"documents_in": len(lines), "documents_out": len(kept), "dropped": {"short": len(lines) - len(kept)}}


@pytest.fixture
def text_file(shared_data, tmp_path) -> Path:
    path = tmp_path / "input.txt"
    path.write_text((shared_data / "corpora" / "tinyshakespeare.txt").read_text()[:3000])
    return path


def siblings(output: Path) -> list[str]:
    return sorted(p.name for p in output.parent.iterdir() if p.name != output.name)


def test_output_is_committed_atomically_with_its_statistics(text_file, tmp_path):
    stage = LinesStage(LinesConfig(min_chars=20), [text_file])
    output = execute_stage(stage, tmp_path / "work")
    assert output.path == stage_path(tmp_path / "work", "dump-1", "lines") == tmp_path / "work" / "dump-1" / "lines"
    assert (output.name, output.group, output.skipped) == ("lines", "dump-1", False)
    stats = json.loads((output.path / STATS_FILE).read_text())
    assert stats == output.statistics
    assert stats["stage"] == "lines" and stats["dump"] == "dump-1" and stats["fingerprint"] == output.fingerprint
    assert stats["seconds"] >= 0 and stats["documents_in"] > stats["documents_out"] > 0
    table = pq.read_table(output.path / part_file_name(0))
    assert table.num_rows == stats["documents_out"]
    assert table.schema.remove_metadata() == DOCUMENT_SCHEMA.remove_metadata()
    assert stage.runs[0].parent == output.path.parent and stage.runs[0].name.startswith(".lines.tmp-")
    assert siblings(output.path) == []  # the temporary folder became the output
    assert load_output(tmp_path / "work", "dump-1", "lines") == output


def test_complete_output_is_skipped_for_the_same_config_and_inputs(text_file, tmp_path):
    first = execute_stage(LinesStage(LinesConfig(), [text_file]), tmp_path)
    again = LinesStage(LinesConfig(), [text_file])
    second = execute_stage(again, tmp_path)
    assert second.skipped and not again.runs
    assert (second.path, second.fingerprint, second.statistics) == (first.path, first.fingerprint, first.statistics)


def test_fingerprint_follows_config_and_inputs(text_file, tmp_path):
    base = execute_stage(LinesStage(LinesConfig(), [text_file]), tmp_path)
    other_config = execute_stage(LinesStage(LinesConfig(min_chars=30), [text_file]), tmp_path)
    assert not other_config.skipped and other_config.fingerprint != base.fingerprint
    text_file.write_text(text_file.read_text() + "\none more line")  # the input changed: size and mtime
    other_input = execute_stage(LinesStage(LinesConfig(min_chars=30), [text_file]), tmp_path)
    assert not other_input.skipped and other_input.fingerprint != other_config.fingerprint
    assert other_input.statistics["documents_in"] == other_config.statistics["documents_in"] + 1
    # an upstream stage's output stands for its fingerprint
    upstream = [StageOutput(tmp_path / "up", "abc", {})], [StageOutput(tmp_path / "up", "abd", {})]
    assert input_identity(upstream[0]) != input_identity(upstream[1])


def test_failed_run_keeps_the_previous_output_and_leaves_nothing(text_file, tmp_path):
    good = execute_stage(LinesStage(LinesConfig(), [text_file]), tmp_path)
    failing = LinesStage(LinesConfig(fail_after_writing=True), [text_file])
    with pytest.raises(RuntimeError, match="failed after writing"):
        execute_stage(failing, tmp_path)
    assert not failing.runs[0].exists() and siblings(good.path) == []
    assert json.loads((good.path / STATS_FILE).read_text()) == good.statistics


def test_leftovers_of_a_killed_run_are_removed_by_the_next_run(text_file, tmp_path):
    workdir = tmp_path / "work"
    script = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from tests.tasks.common.test_stage import LinesConfig, LinesStage;"
        "from fineforge.tasks.common.stage import execute_stage;"
        "execute_stage(LinesStage(LinesConfig(hold_seconds=600), [sys.argv[2]]), Path(sys.argv[3]))"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(ROOT), str(text_file), str(workdir)])
    try:
        deadline = time.monotonic() + 120
        while not list(workdir.glob(f"dump-1/.lines.tmp-*/{STARTED}")) and time.monotonic() < deadline:
            assert child.poll() is None, "the holding stage exited early"
            time.sleep(0.2)
        os.kill(child.pid, signal.SIGKILL)  # as a machine failure would
    finally:
        child.kill()
        child.wait()
    (leftover,) = (workdir / "dump-1").glob(".lines.tmp-*")
    assert not (workdir / "dump-1" / "lines").exists()

    output = execute_stage(LinesStage(LinesConfig(), [text_file]), workdir)
    assert not leftover.exists() and siblings(output.path) == []
    assert output.statistics["documents_out"] > 0


def test_load_output_needs_a_complete_output(tmp_path):
    (tmp_path / "dump-1" / "lines").mkdir(parents=True)  # a folder without stats.json is not complete
    with pytest.raises(FileNotFoundError, match="no complete stage output"):
        load_output(tmp_path, "dump-1", "lines")
