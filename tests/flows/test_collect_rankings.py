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
from tests.flows.test_data_schedule import STARTUP_SECONDS, prefect_server, wait_until  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow

SERVE = (
    "from prefect.deployments.runner import EntrypointType\n"
    "from fineforge.flows.collect_rankings import collect_rankings\n"
    "collect_rankings.serve(name='test', entrypoint_type=EntrypointType.MODULE_PATH, print_starting_message=False)\n"
)
PROMPTS = [{"id": "p-1", "prompt": "Name a prime number."}, {"id": "p-2", "prompt": "Say hello."},
           {"id": "p-3", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}]
SECONDS = 180


@pytest.fixture(scope="module")
def client(prefect_server, tmp_path_factory):  # noqa: F811 (the imported fixture)
    """A Prefect client of the server, whose runner serves `collect_rankings/test` (a deployment, as in the UI)."""
    from prefect.client.orchestration import SyncPrefectClient

    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PREFECT_RUNNER_POLL_FREQUENCY": "1",
           "PREFECT_LOGGING_EXTRA_LOGGERS": "fineforge"}
    log = tmp_path_factory.mktemp("runner") / "runner.log"
    with open(log, "wb") as out:
        runner = subprocess.Popen([sys.executable, "-c", SERVE], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        with SyncPrefectClient(prefect_server) as client:
            def deployment():
                if runner.poll() is not None:
                    pytest.fail(log.read_text()[-3000:])
                try:
                    return client.read_deployment_by_name("collect_rankings/test")
                except Exception:  # not registered yet
                    return None

            client.deployment = wait_until(deployment, STARTUP_SECONDS, "the served deployment")
            yield client
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


def run_button(client, config: dict):
    """What the UI's Run button does with the deployment's form."""
    return client.create_flow_run_from_deployment(client.deployment.id, parameters={"config": config})


def next_form(client, run_id, after: str | None = None, seconds: float = SECONDS) -> tuple[str, str, dict]:
    """When the run is paused for input (at a pause other than `after`): its pause key, the form's description
    and JSON schema, read the way the UI reads them."""
    def paused():
        state = client.read_flow_run(run_id).state
        if state.is_final():
            pytest.fail(f"the run ended while waiting for a form: {state.type} {state.message}")
        keyset = state.state_details.run_input_keyset if state.is_paused() else None
        return keyset if keyset and keyset["description"] != after else None

    keyset = wait_until(paused, seconds, "the run to pause for input")
    read = lambda key: json.loads(client.read_flow_run_input(run_id, keyset[key]))  # noqa: E731
    return keyset["description"], read("description"), read("schema")


def submit(client, run_id, values: dict):
    """What the resume form's Submit does."""
    return client.resume_flow_run(run_id, run_input=values)


def final_state(client, run_id, seconds: float = SECONDS):
    return wait_until(lambda: (s := client.read_flow_run(run_id).state).is_final() and s, seconds, "a final state")


def test_rankings_submitted_in_the_ui_survive_a_cancel_and_a_new_run_resumes(client, session):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.states import Cancelling

    config, prompts = session
    dataset, samples = RankingsDataset(config["dataset"]), config["dataset"].replace(".jsonl", ".samples.jsonl")
    from prefect.exceptions import PrefectHTTPStatusError

    # a value the form's schema forbids is refused at the Run button, naming the field
    with pytest.raises(PrefectHTTPStatusError, match="config.num_completions"):
        run_button(client, {**config, "num_completions": 1})
    missing = run_button(client, {**config, "prompts": config["prompts"] + ".missing"})  # checked at the end
    run = run_button(client, config)

    pause, description, schema = next_form(client, run.id)
    p1 = SampleStore(samples).get(prompts[0])
    assert description.startswith("### Prompt 1 of 3 in this run (`p-1`)")
    assert "**user**\n\n> Name a prime number." in description
    assert [f"#### Completion {n}" in description for n in (1, 2, 3)] == [True] * 3
    assert list(schema["properties"]) == ["judge", "order", "skip", "stop"]
    assert schema["properties"]["judge"]["default"] == "alice"  # prefilled from the config

    assert submit(client, run.id, {"judge": "bob", "order": "3,1,2", "skip": False, "stop": False}).status == \
        SetStateStatus.ACCEPT
    pause, description, schema = next_form(client, run.id, after=pause)
    dataset.refresh()
    assert [(j.prompt_id, j.judge, j.order) for j in dataset] == [("p-1", "bob", tuple(p1.completions[n].id for n in
                                                                                        (2, 0, 1)))]
    assert description.startswith("### Prompt 2 of 3") and schema["properties"]["judge"]["default"] == "bob"

    # the server refuses what the schema does not allow (the UI shows its reason); the run stays paused
    refused = submit(client, run.id, {"judge": 5, "order": "1,2,3"})
    assert refused.status == SetStateStatus.REJECT and "judge" in refused.details.reason
    # a ranking that repeats a completion: the run pauses again with the reason at the top of the form
    submit(client, run.id, {"judge": "bob", "order": "1,1,2", "skip": False, "stop": False})
    pause, description, _ = next_form(client, run.id, after=pause)
    assert description.startswith("### Prompt 2 of 3")
    assert "**Not stored: completion 1 is given more than one place.**" in description
    p2 = SampleStore(samples).get(prompts[1])

    client.set_flow_run_state(run.id, Cancelling(), force=True)  # the Cancel button
    assert final_state(client, run.id).is_cancelled()
    assert [j.prompt_id for j in RankingsDataset(config["dataset"])] == ["p-1"]

    # a new run (here in best/worst mode) resumes at the first unranked prompt with its stored completions
    rerun = run_button(client, {**config, "mode": "best_worst"})
    pause, description, schema = next_form(client, rerun.id)
    assert description.startswith("### Prompt 1 of 2 in this run (`p-2`)")
    assert list(schema["properties"]) == ["judge", "best", "worst", "skip", "stop"]
    assert SampleStore(samples).get(prompts[1]) == p2
    submit(client, rerun.id, {"judge": "carol", "best": 2, "worst": 3, "skip": False, "stop": False})
    pause, description, _ = next_form(client, rerun.id, after=pause)
    assert description.startswith("### Prompt 2 of 2 in this run (`p-3`)")
    submit(client, rerun.id, {"judge": "carol", "best": None, "worst": None, "skip": True, "stop": False})
    assert final_state(client, rerun.id).is_completed()

    stored = {j.prompt_id: j for j in RankingsDataset(config["dataset"])}
    assert sorted(stored) == ["p-1", "p-2"]
    assert stored["p-2"].order == (p2.completions[1].id, p2.completions[2].id) and stored["p-2"].judge == "carol"
    artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
        any_=[rerun.id])))
    table = next(a.data for a in artifacts if a.key == "rankings-summary")
    assert "| ranked | 1 |" in table and "| skipped | 1 |" in table and "| remaining | 1 |" in table

    # a config that fits the schema but names a missing file fails at once, naming the field
    failed = final_state(client, missing.id)
    assert failed.is_failed() and "config.prompts: Value error, prompts file not found" in failed.message
