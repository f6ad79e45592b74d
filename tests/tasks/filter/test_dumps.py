"""Dump specs (`latest`, `CC-MAIN-*` with a since-date) resolved against a folder laid out like the CommonCrawl
bucket, when the build runs; a config holding one keeps the spec, not today's answer."""

from datetime import date

import pytest

from fineforge.flows.data_build_config import DataBuildConfig
from fineforge.tasks.filter.dumps import crawl_week, is_dump_spec, select_dumps
from fineforge.tasks.filter.warc_input import InputError, resolve_warc_inputs
from testkit.dump_bucket import write_dump

DUMPS = {"CC-MAIN-2023-50": "cc-main-2014-35-sample.warc", "CC-MAIN-2024-18": "wget-2024-sample-0000.warc.gz",
         "CC-MAIN-2024-22": "cc-main-2024-22-one-page.warc.gz"}


@pytest.fixture
def bucket(tmp_path, shared_data):
    for dump, name in DUMPS.items():
        write_dump(tmp_path / "bucket", dump, [shared_data / "warc" / name])
    return tmp_path / "bucket"


def test_dump_specs_are_latest_and_dump_name_patterns():
    assert is_dump_spec("latest") and is_dump_spec("CC-MAIN-*") and is_dump_spec("CC-MAIN-2024-*")
    assert not is_dump_spec("CC-MAIN-2024-22") and not is_dump_spec("warcs/*.warc.gz") and not is_dump_spec("x")
    assert crawl_week("CC-MAIN-2024-22") == date(2024, 5, 27)  # Monday of ISO week 22 of 2024


def test_select_dumps_orders_by_crawl_and_applies_since():
    available = ["CC-MAIN-2024-10", "CC-MAIN-2023-50", "CC-MAIN-2024-22", "not-a-dump"]
    assert select_dumps("latest", available) == ["CC-MAIN-2024-22"]
    assert select_dumps("CC-MAIN-*", available) == ["CC-MAIN-2023-50", "CC-MAIN-2024-10", "CC-MAIN-2024-22"]
    assert select_dumps("CC-MAIN-*", available, since=date(2024, 3, 4)) == ["CC-MAIN-2024-10", "CC-MAIN-2024-22"]
    assert select_dumps("CC-MAIN-2023-*", available) == ["CC-MAIN-2023-50"]
    with pytest.raises(ValueError, match="no dump crawled since 2025-01-01"):
        select_dumps("latest", available, since=date(2025, 1, 1))
    with pytest.raises(ValueError, match="no dump matching CC-MAIN-2022-"):
        select_dumps("CC-MAIN-2022-*", available)


def test_latest_and_patterns_resolve_against_the_source_now(bucket, shared_data):
    latest = resolve_warc_inputs("latest", source=str(bucket))
    assert [p.split("/crawl-data/")[1].split("/")[0] for p in latest] == ["CC-MAIN-2024-22"]
    since = resolve_warc_inputs("CC-MAIN-*", source=str(bucket), since=date(2024, 1, 1))
    assert [p.rsplit("/", 1)[1] for p in since] == [DUMPS["CC-MAIN-2024-18"], DUMPS["CC-MAIN-2024-22"]]
    write_dump(bucket, "CC-MAIN-2024-26", [shared_data / "warc" / "wget-2024-sample-0001.warc.gz"])
    assert "CC-MAIN-2024-26" in resolve_warc_inputs("latest", source=str(bucket))[0]  # a newer dump, next run


def test_dump_spec_mistakes_are_one_clear_error(bucket, tmp_path, shared_data):
    with pytest.raises(InputError, match="no dump crawled since 2030-01-01 at the source"):
        resolve_warc_inputs("latest", source=str(bucket), since=date(2030, 1, 1))
    with pytest.raises(InputError, match="since applies to a dump spec"):
        resolve_warc_inputs(str(shared_data / "warc"), since=date(2024, 1, 1))
    with pytest.raises(InputError, match="no dump at the source"):
        resolve_warc_inputs("latest", source=str(tmp_path / "empty"))


def test_a_config_keeps_the_spec_for_the_run_to_resolve(bucket):
    remote = DataBuildConfig(input="latest", since=date(2024, 1, 1))  # at CommonCrawl: not resolved before the run
    assert remote.model_dump(mode="json")["input"] == "latest"
    assert remote.model_dump(mode="json")["since"] == "2024-01-01"
    with pytest.raises(ValueError, match="no dump crawled since 2030-01-01"):  # a local source is checked at once
        DataBuildConfig(input="latest", source=str(bucket), since=date(2030, 1, 1))
