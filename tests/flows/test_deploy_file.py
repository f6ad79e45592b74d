"""`fineforge deploy --file`: a prefect.yaml it cannot use is one line naming the problem, before any server call."""

import pytest
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.flows.deploy import PREFECT_FILE, read_deployments

runner = CliRunner()


def test_the_repository_prefect_yaml_lists_every_flow_once_on_the_fineforge_pool():
    specs = read_deployments(PREFECT_FILE)
    flows = ["collect_rankings", "data_build", "interrogate", "pretrain", "reward_model", "rl", "sft", "tokenize"]
    assert sorted(spec.entrypoint.rsplit(":", 1)[1] for spec in specs if spec.name == "default") == flows
    assert {spec.work_pool for spec in specs} == {"fineforge"}


def test_data_builds_run_one_at_a_time_and_the_weekly_one_on_an_inactive_cron_schedule():
    specs = {f"{spec.entrypoint.rsplit(':', 1)[1]}/{spec.name}": spec for spec in read_deployments(PREFECT_FILE)}
    assert {name for name in specs if name.startswith("data_build/")} == {"data_build/default", "data_build/weekly"}
    assert specs["data_build/default"].concurrency_limit == specs["data_build/weekly"].concurrency_limit == 1
    assert specs["data_build/weekly"].schedules == ({"cron": "0 3 * * 0", "timezone": "UTC", "active": False},)
    assert specs["data_build/weekly"].parameters["config"]["input"] == "latest"  # resolved by each run
    (trigger,) = specs["tokenize/default"].triggers
    assert trigger["expect"] == ["prefect.flow-run.Completed"] and trigger["enabled"] is False


@pytest.mark.parametrize(("text", "reason"), [
    (None, "deployment file not found"),
    ("deployments: [name: x", "is not valid YAML"),
    ("deployments:\n  - name: x\n    entrypoint: a.b:c\n    build: []\n", "deployment 1 unsupported keys ['build']"),
    ("deployments:\n  - name: x\n", "deployment 1 needs a name and an entrypoint"),
    ("deployments:\n  - name: x\n    entrypoint: a.b:c\n    schedules: [{cron: 'every day'}]\n",
     "deployment 1 schedules: cron: Invalid cron string"),
    ("deployments:\n  - name: x\n    entrypoint: a.b:c\n    schedules: [{interval: 60}]\n",
     "deployment 1 schedules: each needs a cron"),
])
def test_a_deployment_file_it_cannot_use_is_one_line(tmp_path, text, reason):
    path = tmp_path / "prefect.yaml"
    if text is not None:
        path.write_text(text)
    result = runner.invoke(app, ["deploy", "--file", str(path)])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert reason in result.output
