"""The Prefect UI and the MLflow UI in real headless Chromium, clicked through as a person uses them: open a
deployment, change one field of its run form, press Run, wait for Completed, open the run's artifact; then
find the run's loss chart in MLflow. Screenshots of each step are saved in the test's tmp folder."""

import re
from pathlib import Path

import pytest
import yaml

from testkit.services import fineforge, tiny_pipeline_parameters

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright never downloads a browser here
# What the person runs: the tiny `pipeline` deployment of prefect.yaml (its run form starts from the tiny preset).
DEPLOYMENT = "tiny"
ENTRYPOINT = "fineforge.flows.pipeline:pipeline"
FORM_FIELD = "Max Steps (Optional)"  # the field changed in the run form: the pretraining's steps
PARAMETER_PATH = ("config", "pretrain", "train", "max_steps")  # where that field lands in the run's parameters
DEFAULT_STEPS, CHANGED_STEPS = 10, 20  # 20: a tick of the loss chart's step axis
ARTIFACT = "pipeline-report"  # the report card
ARTIFACT_TEXT = "MLflow pipeline run"  # drawn once the artifact's page shows its content
ARTIFACT_ROW = rf"(^|\n)step\t{CHANGED_STEPS}\n"  # a row of the report card's model table, as the page renders it
EXPERIMENT = "browser-test"
RUN_NAME = "pretrain"  # the MLflow run is named after the run directory (WORKDIR/runs/pretrain)
METRIC = "train_loss"
RUN_SECONDS = 900
CLICK_MS = 60_000


@pytest.fixture(scope="module")
def deployed(fineforge_server, shared_data, tmp_path_factory) -> Path:
    """The tiny pipeline deployment, registered by `fineforge deploy --file` from its own prefect.yaml: prefect.yaml's
    tiny preset with the sample WARCs' and the work dir's paths made absolute, and its own MLflow names."""
    root = tmp_path_factory.mktemp("browser")
    parameters = tiny_pipeline_parameters(shared_data, root / "work")
    parameters["config"]["pretrain"]["train"]["experiment"] = EXPERIMENT
    parameters["config"]["pretrain"]["registered_model"] = EXPERIMENT
    spec = {"deployments": [{"name": DEPLOYMENT, "entrypoint": ENTRYPOINT, "parameters": parameters}]}
    (root / "prefect.yaml").write_text(yaml.safe_dump(spec))
    result = fineforge("deploy", "--file", str(root / "prefect.yaml"), "--working-dir", str(root),
                       env=fineforge_server.env)
    assert result.returncode == 0, result.stdout + result.stderr
    return root


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab.set_default_timeout(CLICK_MS)
            yield tab
        finally:
            browser.close()


def form_field(page, label: str):
    """The run form's field with this label, label and input (the labels are not bound to their inputs)."""
    return page.locator(f'xpath=//span[contains(@class, "schema-form-property__label") and normalize-space()="{label}"]'
                        '/ancestor::div[contains(concat(" ", @class, " "), " schema-form-property ")][1]')


def run_from_the_prefect_ui(page, server, shots: Path) -> str:
    """Deployments -> the deployment -> Run -> Custom run -> change a field -> Submit -> the new run; its id."""
    page.goto(f"{server.prefect_url}/deployments")
    page.get_by_role("link", name=DEPLOYMENT, exact=True).click()
    page.wait_for_url(re.compile(r".*/deployments/deployment/[0-9a-f-]+"))
    run_button = page.get_by_role("button", name="Run", exact=True)
    run_button.wait_for()  # the deployment's page is drawn
    page.screenshot(path=shots / "1-deployment.png")
    run_button.click()
    page.get_by_text("Custom run", exact=True).click()
    field = form_field(page, FORM_FIELD)
    assert field.locator("input").input_value() == str(DEFAULT_STEPS)  # the form starts from the deployment's
    field.locator("input").fill(str(CHANGED_STEPS))
    field.screenshot(path=shots / "2-form-field-changed.png")
    page.get_by_role("button", name="Submit", exact=True).click()
    page.wait_for_url(re.compile(r".*/deployments/deployment/[0-9a-f-]+(\?.*)?$"))  # back on the deployment
    page.locator('a[href*="/runs/flow-run/"]').first.click()  # its runs, newest first: the one just submitted
    page.wait_for_url(re.compile(r".*/runs/flow-run/[0-9a-f-]+"))
    return page.url.rsplit("/", 1)[-1].split("?")[0]


def open_the_artifact(page, shots: Path) -> str:
    """The run page's Artifacts tab -> the artifact's page; its text."""
    page.get_by_text("Completed", exact=True).first.wait_for(timeout=RUN_SECONDS * 1000)
    page.screenshot(path=shots / "3-run-completed.png")
    page.get_by_text("Artifacts", exact=True).click()
    page.get_by_text(ARTIFACT, exact=True).click()
    page.wait_for_url(re.compile(r".*/artifacts/artifact/[0-9a-f-]+"))
    page.get_by_text(ARTIFACT_TEXT).first.wait_for()
    page.screenshot(path=shots / "4-artifact.png")
    return page.inner_text("body")


def find_the_chart_in_mlflow(page, mlflow_url: str, shots: Path) -> None:
    """MLflow UI -> Model training -> the experiment -> the run -> Model metrics -> the metric's chart, drawn."""
    page.goto(mlflow_url)
    page.get_by_text("Model training", exact=True).click()
    page.get_by_role("link", name=EXPERIMENT, exact=True).first.click()
    page.get_by_role("link", name=RUN_NAME, exact=True).first.click()
    page.get_by_text("Model metrics", exact=True).click()
    page.get_by_placeholder("Search metric charts").fill(METRIC)
    card = page.locator('[data-testid="experiment-view-compare-runs-card"]').filter(
        has=page.locator(f'h4[title="{METRIC}"]'))
    card.get_by_text("Step", exact=True).wait_for()  # the plot's axis: the chart is drawn, not just its frame
    card.get_by_text(str(CHANGED_STEPS), exact=True).first.wait_for()  # the x axis reaches the changed step count
    page.screenshot(path=shots / "5-mlflow-train-loss.png")


def test_a_person_runs_a_deployment_from_the_prefect_ui_and_finds_its_loss_chart_in_mlflow(
        fineforge_server, deployed, page, tmp_path):
    try:
        walk_through_the_uis(page, fineforge_server, tmp_path)
    except Exception:
        page.screenshot(path=tmp_path / "failure.png")  # where the walk stopped
        raise


def walk_through_the_uis(page, server, shots: Path) -> None:
    run_id = run_from_the_prefect_ui(page, server, shots)
    run = server.api("GET", f"/flow_runs/{run_id}")
    value = run["parameters"]
    for key in PARAMETER_PATH:
        value = value[key]
    assert value == CHANGED_STEPS  # the form's change reached the run

    artifact_text = open_the_artifact(page, shots)
    assert server.wait_for_run(run_id, 60)["state"]["type"] == "COMPLETED"
    assert re.search(ARTIFACT_ROW, artifact_text), artifact_text  # the summary card's table, rendered

    find_the_chart_in_mlflow(page, server.mlflow_url, shots)
    assert len(list(shots.glob("*.png"))) == 5
