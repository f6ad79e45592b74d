"""Input resolution on the real sample WARCs and on a local folder laid out like the CommonCrawl bucket."""

from __future__ import annotations

import gzip
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from fineforge.tasks.filter.warc_input import InputError, dump_of, open_uri, resolve_warc_inputs
from fineforge.tasks.filter.warc_records import iter_html_documents

DUMP = "CC-MAIN-2024-22"
ONE_PAGE = "cc-main-2024-22-one-page.warc.gz"


def _archives_in(folder: Path) -> list[str]:
    names = [p.name for p in folder.iterdir() if p.is_file()]
    return sorted(
        str(folder / n) for n in names if n.endswith((".warc", ".warc.gz", ".arc", ".arc.gz")) and ".wet" not in n
    )


@pytest.fixture
def bucket(tmp_path: Path, shared_data: Path) -> Path:
    """A local folder laid out like s3://commoncrawl: a dump's warc.paths.gz and one real WARC it lists."""
    root = tmp_path / "bucket"
    listed = [
        f"crawl-data/{DUMP}/segments/1715971057216.39/warc/{name}"
        for name in ("CC-MAIN-20240517-00000.warc.gz", "CC-MAIN-20240517-00001.warc.gz", ONE_PAGE)
    ]
    manifest = root / "crawl-data" / DUMP / "warc.paths.gz"
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes(gzip.compress(("\n".join(listed) + "\n").encode()))
    real = root / listed[-1]
    real.parent.mkdir(parents=True)
    shutil.copyfile(shared_data / "warc" / ONE_PAGE, real)
    return root


def test_folder_lists_archives_sorted_without_wet_files_or_subfolders(shared_data):
    folder = shared_data / "warc"
    got = resolve_warc_inputs(str(folder))
    assert got == _archives_in(folder)
    assert all(".wet" not in p and "/broken/" not in p for p in got)
    assert str(folder / "cc-main-2014-35-sample.warc") in got


def test_glob_and_single_file(shared_data):
    pattern = str(shared_data / "warc" / "wget-2024-sample-*.warc.gz")
    assert resolve_warc_inputs(pattern) == sorted(str(p) for p in (shared_data / "warc").glob("wget-2024-sample-*"))
    one = str(shared_data / "warc" / ONE_PAGE)
    assert resolve_warc_inputs(one) == [one]


@pytest.mark.parametrize("compressed", [False, True])
def test_list_file_with_absolute_relative_and_remote_entries(tmp_path, shared_data, compressed):
    absolute = str(shared_data / "warc" / ONE_PAGE)
    relative = os.path.relpath(shared_data / "warc" / "cc-main-2014-35-sample.warc", tmp_path)
    remote = f"https://data.commoncrawl.org/crawl-data/{DUMP}/x.warc.gz"
    text = f"# sample inputs\n{absolute}\n\n{relative}\n{remote}\n"
    listing = tmp_path / ("inputs.txt.gz" if compressed else "inputs.txt")
    listing.write_bytes(gzip.compress(text.encode()) if compressed else text.encode())
    got = resolve_warc_inputs(str(listing))
    assert got == [absolute, str(shared_data / "warc" / "cc-main-2014-35-sample.warc"), remote]


def test_dump_name_reads_warc_paths_from_the_source_and_files_are_readable(bucket):
    got = resolve_warc_inputs(DUMP, source=str(bucket))
    assert len(got) == 3
    assert all(p.startswith(f"{bucket}/crawl-data/{DUMP}/segments/") for p in got)
    assert {dump_of(p, "none") for p in got} == {DUMP}
    counts: Counter = Counter()
    docs = list(iter_html_documents(got[-1], counts))
    assert counts["html_documents"] == len(docs) == 1
    assert docs[0].metadata["warc_file"] == got[-1]


def test_dump_name_with_limit_and_sample(bucket):
    everything = resolve_warc_inputs(DUMP, source=str(bucket))
    assert resolve_warc_inputs(DUMP, source=str(bucket), limit=2) == everything[:2]
    sampled = resolve_warc_inputs(DUMP, source=str(bucket) + "/", sample=2, seed=7)
    assert len(sampled) == 2 and set(sampled) <= set(everything)
    assert sampled == [p for p in everything if p in sampled]  # kept in input order
    assert resolve_warc_inputs(DUMP, source=str(bucket), sample=2, seed=7) == sampled  # deterministic
    assert resolve_warc_inputs(DUMP, source=str(bucket), sample=10) == everything


def test_sample_of_a_folder_is_deterministic_and_varies_with_the_seed(shared_data):
    folder = str(shared_data / "warc")
    everything = resolve_warc_inputs(folder)
    draws = {tuple(resolve_warc_inputs(folder, sample=3, seed=seed)) for seed in range(8)}
    assert all(len(d) == 3 and set(d) <= set(everything) for d in draws)
    assert len(draws) > 1
    assert resolve_warc_inputs(folder, sample=3, seed=5) == resolve_warc_inputs(folder, sample=3, seed=5)


def test_input_errors_name_the_problem(tmp_path, bucket, shared_data):
    cases = {
        str(tmp_path / "missing"): "input not found",
        str(tmp_path / "nothing-*.warc.gz"): "no WARC files match",
    }
    empty = tmp_path / "empty"
    empty.mkdir()
    cases[str(empty)] = "no WARC files"
    only_wet = tmp_path / "wet"
    only_wet.mkdir()
    shutil.copyfile(shared_data / "warc" / "cc-main-2024-22-one-page.warc.wet.gz", only_wet / "a.warc.wet.gz")
    cases[str(only_wet)] = "no WARC files"
    blank_list = tmp_path / "list.txt"
    blank_list.write_text("# nothing yet\n\n")
    cases[str(blank_list)] = "lists no WARC files"
    for spec, message in cases.items():
        with pytest.raises(InputError, match=message) as raised:
            resolve_warc_inputs(spec)
        assert spec in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(InputError, match="unknown dump CC-MAIN-2099-01"):
        resolve_warc_inputs("CC-MAIN-2099-01", source=str(bucket))
    for kwargs, message in (({"limit": 0}, "limit must be"), ({"sample": -1}, "sample must be")):
        with pytest.raises(InputError, match=message):
            resolve_warc_inputs(str(shared_data / "warc"), **kwargs)
    with pytest.raises(InputError, match="either limit or sample"):
        resolve_warc_inputs(str(shared_data / "warc"), limit=1, sample=1)


def test_dump_of():
    uri = f"s3://commoncrawl/crawl-data/{DUMP}/segments/1/warc/CC-MAIN-20240517-00000.warc.gz"
    assert dump_of(uri, "local") == DUMP
    assert dump_of("/data/wget-2024-sample-0000.warc.gz", "local") == "local"


def test_open_uri_streams_local_paths_and_file_urls(shared_data):
    path = shared_data / "warc" / ONE_PAGE
    head = path.read_bytes()[:64]
    for uri in (str(path), path.as_uri()):
        with open_uri(uri) as f:
            assert f.read(64) == head
            f.seek(2)
            assert f.read(4) == head[2:6]
