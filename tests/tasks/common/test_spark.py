"""Spark session settings: a local master is bound to loopback; a cluster's driver address and executors'
Python are its own unless configured (nothing of this machine is forced on it)."""

from __future__ import annotations

import sys

import pytest
from pydantic import ValidationError

from fineforge.tasks.common.spark import SparkConfig, executor_python, session_settings


def test_local_master_is_bound_to_loopback_with_few_shuffle_partitions(monkeypatch):
    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    config = SparkConfig(master="local[2]")
    settings = session_settings(config)
    assert settings["spark.driver.host"] == settings["spark.driver.bindAddress"] == "127.0.0.1"
    assert settings["spark.sql.shuffle.partitions"] == "4"
    assert executor_python(config) == sys.executable


def test_cluster_master_keeps_its_own_driver_address_and_python(monkeypatch):
    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    config = SparkConfig(master="spark://master:7077")
    settings = session_settings(config)
    assert not {"spark.driver.host", "spark.driver.bindAddress", "spark.sql.shuffle.partitions"} & set(settings)
    assert executor_python(config) is None  # pyspark's default: $PYSPARK_PYTHON, else python3 on the workers


def test_cluster_settings_are_taken_as_given():
    config = SparkConfig(master="spark://master:7077", driver_host="node3", driver_bind_address="0.0.0.0",
                         executor_python="/opt/venv/bin/python", extra_conf={"spark.driver.host": "node4"})  # fmt: skip
    settings = session_settings(config)
    assert settings["spark.driver.bindAddress"] == "0.0.0.0"
    assert settings["spark.driver.host"] == "node4"  # extra_conf has the last word
    assert executor_python(config) == "/opt/venv/bin/python"


def test_unknown_setting_is_refused_by_name():
    with pytest.raises(ValidationError, match="driver_hots"):
        SparkConfig(driver_hots="x")
