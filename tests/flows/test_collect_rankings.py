"""`collect_rankings` driven through the Prefect API exactly as the Prefect UI drives it, against a real
`prefect server` and a real runner serving the flow as a deployment (pausing needs a real API; cancelling
needs whoever runs the flow to stop it):

- the Run button: `POST /deployments/{id}/create_flow_run` with the form's parameters;
- the resume form: `GET /flow_runs/{id}/input/{key}` for its description and schema (keys from the paused
  state's `run_input_keyset`), then `POST /flow_runs/{id}/resume` with `{"run_input": values}`;
- the Cancel button: `POST /flow_runs/{id}/set_state` with a CANCELLING state, forced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fineforge.tasks.preferences.prompts import read_prompts
from fineforge.tasks.preferences.rankings import RankingsDataset
from fineforge.tasks.preferences.sampling import SampleStore
from testkit.checkpoints import tiny_bytes_checkpoint
from testkit.prefect_server import STARTUP_SECONDS, prefect_server, wait_until

pytestmark = pytest.mark.slow

SERVE = (
    "from prefect.deployments.runner import EntrypointType\n"
    "from fineforge.flows.collect_rankings import collect_rankings\n"
    "collect_rankings.serve(name='test', entrypoint_type=EntrypointType.MODULE_PATH, print_starting_message=False)\n"
)
PROMPTS = [{"id": "p-1", "prompt": "Name a prime number."}, {"id": "p-2", "prompt": "Say hello."},
           {"id": "p-3", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}]
SECONDS = 180


class PrefectUI:
    """What a person does in the Prefect UI, as the calls the UI makes to the API."""

    def __init__(self, client, deployment_id) -> None:
        self.client, self.deployment_id = client, deployment_id

    def run_button(self, config: dict):
        """Run the deployment with the form's parameters."""
        return self.client.create_flow_run_from_deployment(self.deployment_id, parameters={"config": config})

    def next_form(self, run_id, after: str | None = None) -> tuple[str, str, dict]:
        """When the run is paused for input (at a pause other than `after`): the pause's description key, the
        form's description and its JSON schema, read the way the UI reads them."""
        def paused():
            state = self.client.read_flow_run(run_id).state
            if state.is_final():
                pytest.fail(f"the run ended while waiting for a form: {state.type} {state.message}")
            keyset = state.state_details.run_input_keyset if state.is_paused() else None
            return keyset if keyset and keyset["description"] != after else None

        keyset = wait_until(paused, SECONDS, "the run to pause for input")

        def read(key: str):
            return json.loads(self.client.read_flow_run_input(run_id, keyset[key]))

        return keyset["description"], read("description"), read("schema")

    def submit(self, run_id, values: dict):
        """The resume form's Submit."""
        return self.client.resume_flow_run(run_id, run_input=values)

    def cancel(self, run_id) -> None:
        from prefect.states import Cancelling

        self.client.set_flow_run_state(run_id, Cancelling(), force=True)

    def final_state(self, run_id):
        def final():
            state = self.client.read_flow_run(run_id).state
            return state if state.is_final() else None

        return wait_until(final, SECONDS, "a final state")


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """The Prefect UI of a real server, whose runner serves the deployment `collect_rankings/test`."""
    from prefect.client.orchestration import SyncPrefectClient

    folder = tmp_path_factory.mktemp("prefect")
    with prefect_server(folder / "server") as url, SyncPrefectClient(url) as client:
        env = {**os.environ, "PREFECT_API_URL": url, "PREFECT_RUNNER_POLL_FREQUENCY": "1",
               "PREFECT_LOGGING_EXTRA_LOGGERS": "fineforge"}
        with open(folder / "runner.log", "wb") as out:
            runner = subprocess.Popen([sys.executable, "-c", SERVE], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            def deployment():
                if runner.poll() is not None:
                    pytest.fail((folder / "runner.log").read_text()[-3000:])
                try:
                    return client.read_deployment_by_name("collect_rankings/test")
                except Exception:  # not registered yet
                    return None

            yield PrefectUI(client, wait_until(deployment, STARTUP_SECONDS, "the served deployment").id)
        finally:
            runner.terminate()
            runner.wait(timeout=60)


@pytest.fixture
def session(tmp_path):
    run_dir = tiny_bytes_checkpoint(tmp_path / "run")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    config = {"checkpoint": str(run_dir), "prompts": str(prompts), "dataset": str(tmp_path / "rankings.jsonl"),
              "num_completions": 3, "judge": "alice", "sampling": {"max_new_tokens": 12, "seed": 2},
              "poll_seconds": 1}
    return config, read_prompts(prompts).prompts


def test_rankings_submitted_in_the_ui_survive_a_cancel_and_a_new_run_resumes(ui, session):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.exceptions import PrefectHTTPStatusError

    config, prompts = session
    dataset, samples = RankingsDataset(config["dataset"]), config["dataset"].replace(".jsonl", ".samples.jsonl")

    # a value the form's schema forbids is refused at the Run button, naming the field
    with pytest.raises(PrefectHTTPStatusError, match="config.num_completions"):
        ui.run_button({**config, "num_completions": 1})
    run = ui.run_button(config)

    pause, description, schema = ui.next_form(run.id)
    p1 = SampleStore(samples).get(prompts[0])
    assert description.startswith("### Prompt 1 of 3 in this run (`p-1`)")
    assert "**user**\n\n> Name a prime number." in description
    assert [f"#### Completion {n}" in description for n in (1, 2, 3)] == [True] * 3
    assert list(schema["properties"]) == ["judge", "order", "skip", "stop"]
    assert schema["properties"]["judge"]["default"] == "alice"  # prefilled from the config

    assert ui.submit(run.id, {"judge": "bob", "order": "3,1,2", "skip": False, "stop": False}).status == \
        SetStateStatus.ACCEPT
    pause, description, schema = ui.next_form(run.id, after=pause)
    dataset.refresh()
    best_first = tuple(p1.completions[n].id for n in (2, 0, 1))
    assert [(j.prompt_id, j.judge, j.order) for j in dataset] == [("p-1", "bob", best_first)]
    assert description.startswith("### Prompt 2 of 3") and schema["properties"]["judge"]["default"] == "bob"

    # the server refuses what the schema does not allow (the UI shows its reason); the run stays paused
    refused = ui.submit(run.id, {"judge": 5, "order": "1,2,3"})
    assert refused.status == SetStateStatus.REJECT and "judge" in refused.details.reason
    # a ranking that repeats a completion: the run pauses again with the reason at the top of the form
    ui.submit(run.id, {"judge": "bob", "order": "1,1,2", "skip": False, "stop": False})
    pause, description, _ = ui.next_form(run.id, after=pause)
    assert description.startswith("### Prompt 2 of 3")
    assert "**Not stored: completion 1 is given more than one place.**" in description
    p2 = SampleStore(samples).get(prompts[1])

    ui.cancel(run.id)  # the Cancel button, while the run waits for the corrected ranking
    assert ui.final_state(run.id).is_cancelled()
    assert [(j.prompt_id, j.order) for j in RankingsDataset(config["dataset"])] == [("p-1", best_first)]

    # a new run (here in best/worst mode) resumes at the first unranked prompt with its stored completions
    rerun = ui.run_button({**config, "mode": "best_worst"})
    pause, description, schema = ui.next_form(rerun.id)
    assert description.startswith("### Prompt 1 of 2 in this run (`p-2`)")
    assert list(schema["properties"]) == ["judge", "best", "worst", "skip", "stop"]
    assert SampleStore(samples).get(prompts[1]) == p2
    ui.submit(rerun.id, {"judge": "carol", "best": 2, "worst": 3, "skip": False, "stop": False})
    pause, description, _ = ui.next_form(rerun.id, after=pause)
    assert description.startswith("### Prompt 2 of 2 in this run (`p-3`)")
    ui.submit(rerun.id, {"judge": "carol", "best": None, "worst": None, "skip": True, "stop": False})
    assert ui.final_state(rerun.id).is_completed()

    stored = {j.prompt_id: j for j in RankingsDataset(config["dataset"])}
    assert sorted(stored) == ["p-1", "p-2"]
    assert stored["p-2"].order == (p2.completions[1].id, p2.completions[2].id) and stored["p-2"].judge == "carol"
    artifacts = ui.client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
        any_=[rerun.id])))
    table = next(a.data for a in artifacts if a.key == "rankings-summary")
    assert "| ranked | 1 |" in table and "| skipped | 1 |" in table and "| remaining | 1 |" in table
