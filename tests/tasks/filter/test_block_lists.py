"""The prepared URL block lists answer exactly as datatrove's in-memory sets, and are prepared once per machine."""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys
import textwrap

import pytest
from datatrove.data import Document

from fineforge.tasks.filter.block_lists import PreparedNames, prepare_block_lists, prepared_path
from fineforge.tasks.filter.config import URLFilterSettings, _new_url_filter, _url_filter

SETTINGS = URLFilterSettings(extra_domains=["extra-blocked.org", " spaced.org\n"],
                             extra_urls=["https://ok.example/extra-blocked-page"])


@pytest.fixture(scope="module")
def reference():
    """datatrove's URLFilter with its lists parsed into sets, as datatrove's own `download_data` does."""
    step = _new_url_filter(SETTINGS)
    step.download_data()
    return step


def test_prepared_lists_answer_as_datatroves_sets(reference):
    prepared = _url_filter(SETTINGS)
    rng = random.Random(3)
    edge_cases = ["", " ", "#", "extra-blocked.org", "spaced.org", " spaced.org\n", "a.com\x00",
                  "lone-\udcff-surrogate.com", "ÜBER.de", "über.de"]
    for ours, theirs in ((prepared.block_listed_domains, reference.block_listed_domains),
                         (prepared.block_listed_url, reference.block_listed_url)):
        assert isinstance(ours, PreparedNames)
        members = rng.sample(sorted(theirs), 3000)
        near_misses = [name[:-1] for name in members] + [name.upper() for name in members] + [f"x{n}" for n in members]
        for name in members + near_misses + edge_cases:
            assert (name in ours) == (name in theirs), repr(name)
        assert all(name in ours for name in members)


def test_url_decisions_are_datatroves(reference):
    prepared = _url_filter(SETTINGS)
    blocked_domain = sorted(name for name in reference.block_listed_domains if name.count(".") == 1)[100]
    blocked_url = sorted(reference.block_listed_url)[10]
    urls = [f"https://{blocked_domain}/a", f"http://www.{blocked_domain}/b", blocked_url,
            "https://extra-blocked.org/", "https://ok.example/extra-blocked-page", "https://ok.example/porn",
            "https://example.org/news/today", "https://spaced.org/"]
    decisions = [prepared.filter(Document(text="x", id=str(i), metadata={"url": url})) for i, url in enumerate(urls)]
    assert decisions == [reference.filter(Document(text="x", id=str(i), metadata={"url": url}))
                         for i, url in enumerate(urls)]
    assert decisions[:5] == [(False, "domain"), (False, "domain"), (False, "url"), (False, "domain"), (False, "url")]
    assert decisions[6] is True


def test_a_prepared_list_survives_pickling_and_forking():
    names = PreparedNames(prepare_block_lists()["urls"], {"extra.example"})
    some_url = "http://www.example.com/not-listed"
    assert some_url not in names and "extra.example" in names
    copy = pickle.loads(pickle.dumps(names))
    assert "extra.example" in copy and some_url not in copy
    read, write = os.pipe()
    if (child := os.fork()) == 0:  # the child opens its own connection
        os.write(write, b"1" if "extra.example" in names and some_url not in names else b"0")
        os._exit(0)
    os.waitpid(child, 0)
    assert os.read(read, 1) == b"1"


def test_concurrent_workers_prepare_the_lists_once(tmp_path, monkeypatch):
    script = textwrap.dedent("""
        import os
        from fineforge.tasks.filter.block_lists import prepare_block_lists
        paths = prepare_block_lists()
        print(" ".join(f"{os.stat(p).st_ino}:{os.stat(p).st_mtime_ns}" for p in paths.values()))
    """)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    workers = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0]
    again = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert outputs[0] == outputs[1] == again.stdout  # one build: the same files, never rewritten
    files = {path.name for path in (tmp_path / "fineforge" / "url_block_lists").iterdir()}
    assert not [name for name in files if name.endswith(".partial")]
    assert {prepared_path("domains").name, prepared_path("urls").name} <= files
