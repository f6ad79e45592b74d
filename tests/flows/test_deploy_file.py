"""`fineforge deploy --file`: a prefect.yaml it cannot use is one line naming the problem, before any server call."""

import pytest
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.flows.deploy import PREFECT_FILE, read_deployments

runner = CliRunner()


def test_the_repository_prefect_yaml_lists_every_flow_once_on_the_fineforge_pool():
    specs = read_deployments(PREFECT_FILE)
    flows = ["collect_rankings", "data_build", "interrogate", "pipeline", "pretrain", "reward_model", "rl", "sft",
             "tokenize"]
    assert sorted(spec.entrypoint.rsplit(":", 1)[1] for spec in specs) == flows
    assert {spec.work_pool for spec in specs} == {"fineforge"}


@pytest.mark.parametrize(("text", "reason"), [
    (None, "deployment file not found"),
    ("deployments: [name: x", "is not valid YAML"),
    ("deployments:\n  - name: x\n    entrypoint: a.b:c\n    build: []\n", "deployment 1 unsupported keys ['build']"),
    ("deployments:\n  - name: x\n", "deployment 1 needs a name and an entrypoint"),
])
def test_a_deployment_file_it_cannot_use_is_one_line(tmp_path, text, reason):
    path = tmp_path / "prefect.yaml"
    if text is not None:
        path.write_text(text)
    result = runner.invoke(app, ["deploy", "--file", str(path)])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert reason in result.output
