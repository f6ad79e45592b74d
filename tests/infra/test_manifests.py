"""The service stack as files: every YAML under infra/ parses, and the compose file, the Dockerfiles, the
Kubernetes manifests and the Helm values refer only to things that exist (images, volumes, config maps,
secrets and their keys, ports, environment). With a Docker Compose binary present, `compose config` also
validates and renders the compose file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA, DOCKER, K8S = ROOT / "infra", ROOT / "docker", ROOT / "infra" / "k8s"
COMPOSE = INFRA / "docker-compose.yml"
LOOPBACK_PORT = re.compile(r"^\$\{FINEFORGE_BIND:-127\.0\.0\.1\}:\d+:\d+$")
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)")
ENV_LINE = re.compile(r"^([A-Z_][A-Z0-9_]*)=", re.MULTILINE)
SECRET_CREATED = re.compile(r"create secret generic (\S+) (.*)")
SECRET_LITERAL_KEY = re.compile(r"--from-literal=([\w.-]+)=")
PINNED_TAG = re.compile(r"^[\w./-]+:(?!latest$)[\w][\w.-]*$")
ONE_SHOT = "no"  # restart policy of a service that runs once and exits (no healthcheck)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_objects() -> list[dict]:
    return [doc for path in sorted(K8S.glob("*.yaml")) if "values" not in path.name for doc in documents(path)]


def generated_env_keys() -> set[str]:
    """The variables infra/make-env.sh writes into infra/.env."""
    return set(ENV_LINE.findall((INFRA / "make-env.sh").read_text()))


def created_secrets() -> dict[str, set[str]]:
    """Secret name -> its keys, as k8s/create-secrets.sh creates them."""
    secrets = {}
    for name, arguments in SECRET_CREATED.findall((K8S / "create-secrets.sh").read_text()):
        keys = generated_env_keys() if "--from-env-file" in arguments else set(SECRET_LITERAL_KEY.findall(arguments))
        secrets[name] = keys
    return secrets


def built_images(compose: dict) -> dict[str, Path]:
    """Image name -> Dockerfile of every image the compose file builds."""
    return {
        service["image"]: (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).resolve()
        for service in compose["services"].values()
        if "build" in service
    }


def walk(node, key: str) -> Iterator:
    """Every value stored under `key` anywhere in a parsed YAML tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from walk(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item, key)


def pod_specs(obj: dict) -> Iterator[dict]:
    """Pod specs inside a manifest: any mapping holding `containers` next to `volumes`."""
    for spec in walk(obj, "spec"):
        if isinstance(spec, dict) and "containers" in spec:
            yield spec
    if obj.get("kind") == "TrainJob":
        yield {"containers": [obj["spec"]["trainer"]], "volumes": []}


def test_every_yaml_parses():
    paths = sorted(INFRA.rglob("*.yaml")) + sorted(INFRA.rglob("*.yml"))
    assert len(paths) >= 8
    for path in paths:
        assert documents(path), path


def test_compose_services_are_healthchecked_closed_and_credentialed():
    compose = load(COMPOSE)
    services = compose["services"]
    assert {"postgres", "objectstore", "prefect-server", "prefect-worker-cpu", "prefect-worker-gpu", "mlflow",
            "spark-master", "spark-worker"} <= set(services)  # fmt: skip
    for name, service in services.items():
        if service.get("restart") != ONE_SHOT:
            assert service.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
        for port in service.get("ports", []):
            assert LOOPBACK_PORT.match(port), f"{name}: port {port} is not bound to 127.0.0.1 by default"
        for target, condition in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            if condition["condition"] == "service_completed_successfully":
                assert services[target].get("restart") == ONE_SHOT
            else:
                assert condition["condition"] == "service_healthy" and "healthcheck" in services[target]
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert (COMPOSE.parent / source).exists() if source.startswith(".") else source in compose["volumes"]
    text = COMPOSE.read_text()
    assert "AWS_ENDPOINT_URL" not in text  # it would send s3://commoncrawl to the local store
    assert set(VARIABLE.findall(text)) - {"FINEFORGE_BIND"} <= generated_env_keys()
    assert not re.search(r"(PASSWORD|SECRET|AUTH_STRING)\w*: [\"']?[\w-]+[\"']?$", text, re.MULTILINE)


def test_compose_images_are_built_here_or_pinned():
    compose = load(COMPOSE)
    built = built_images(compose)
    assert set(built) >= {"fineforge:0.1.0", "fineforge-gpu:0.1.0", "fineforge-mlflow:3.17.2"}
    for name, service in compose["services"].items():
        image = service["image"]
        assert image in built or PINNED_TAG.match(image), f"{name}: image {image} is neither built nor pinned"
    for dockerfile in set(built.values()):
        text = dockerfile.read_text()
        assert PINNED_TAG.match(re.search(r"^FROM (\S+)", text, re.MULTILINE).group(1))
        for source in re.findall(r"^COPY (.+) \S+$", text, re.MULTILINE):
            for path in source.split():
                assert (ROOT / path).exists(), f"{dockerfile.name}: COPY {path} not found"
    mlflow = (DOCKER / "mlflow.Dockerfile").read_text()
    assert "psycopg" in mlflow and "boto3" in mlflow and "mlflow[auth]" in mlflow


def test_compose_turns_authentication_on():
    services = load(COMPOSE)["services"]
    assert "PREFECT_SERVER_API_AUTH_STRING" in services["prefect-server"]["environment"]
    assert "--app-name=basic-auth" in services["mlflow"]["command"]
    assert "postgresql+psycopg://" in services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    for name in ("prefect-worker-cpu", "prefect-worker-gpu"):
        assert {"PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_PASSWORD"} <= set(services[name]["environment"])
    for name, variable in (("spark-master", "SPARK_MASTER_OPTS"), ("spark-worker", "SPARK_WORKER_OPTS")):
        assert "spark.authenticate=true" in services[name]["environment"][variable]
    assert "spark.authenticate=true" in services["prefect-worker-cpu"]["environment"]["PYSPARK_SUBMIT_ARGS"]


def compose_binary() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    found = shutil.which("docker-compose")
    return [found] if found else None


def test_compose_config_renders_with_generated_credentials(tmp_path):
    command = compose_binary()
    if command is None:
        pytest.skip("no Docker Compose binary here: the structure is checked by the tests above")
    env_file = tmp_path / ".env"  # never the user's infra/.env
    environment = {**os.environ, "FINEFORGE_ENV_FILE": str(env_file)}
    subprocess.run(["sh", str(INFRA / "make-env.sh")], check=True, env=environment)
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    rendered = subprocess.run([*command, "-f", str(COMPOSE), "--env-file", str(env_file), "--profile", "gpu", "config",
                               "--format", "json"], capture_output=True, text=True)  # fmt: skip
    assert rendered.stdout.strip(), rendered.stderr
    services = json.loads(rendered.stdout)["services"]
    assert set(services) == set(load(COMPOSE)["services"])
    assert all(port["host_ip"] == "127.0.0.1" for s in services.values() for port in s.get("ports", []))


def test_kubernetes_references_resolve():
    objects = k8s_objects()
    defined = {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    namespaces = {obj["metadata"].get("namespace") for obj in objects if obj["kind"] != "Namespace"}
    assert namespaces == {"fineforge"} and ("Namespace", "fineforge") in defined
    config_maps = {obj["metadata"]["name"]: obj["data"] for obj in objects if obj["kind"] == "ConfigMap"}
    secrets = created_secrets()
    for obj in objects:
        for claim in walk(obj, "claimName"):
            assert ("PersistentVolumeClaim", claim) in defined, claim
        for ref in [*walk(obj, "configMap"), *walk(obj, "configMapRef"), *walk(obj, "configMapKeyRef")]:
            assert ref["name"] in config_maps, ref
            keys = [item["key"] for item in ref.get("items", [])] + ([ref["key"]] if "key" in ref else [])
            assert set(keys) <= set(config_maps[ref["name"]]), ref
        for ref in walk(obj, "secretKeyRef"):
            assert ref["key"] in secrets.get(ref["name"], set()), f"secret {ref} is not created by create-secrets.sh"
        for account in walk(obj, "spark.kubernetes.authenticate.driver.serviceAccountName"):
            assert ("ServiceAccount", account) in defined
        for image in [*walk(obj, "image"), *walk(obj, "spark.kubernetes.container.image")]:
            assert image in built_images(load(COMPOSE)) or PINNED_TAG.match(image), image
        for pod in pod_specs(obj):
            volumes = {volume["name"] for volume in pod.get("volumes", [])}
            for container in pod["containers"]:
                for mount in container.get("volumeMounts", []):
                    assert mount["name"] in volumes, f"{obj['metadata']['name']}: mount {mount['name']} has no volume"


def test_training_job_has_shared_memory_work_volume_and_config():
    trainjob = next(obj for obj in k8s_objects() if obj["kind"] == "TrainJob")
    pod = next(iter(walk(trainjob["spec"]["runtimePatches"], "replicatedJobs")))[0]["template"]["spec"]["template"]
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in pod["spec"]["containers"][0]["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert "persistentVolumeClaim" in volumes[mounts["/work"]]
    config_path = trainjob["spec"]["trainer"]["command"][-1]
    assert config_path.startswith("/config/") and Path(config_path).name in {
        item["path"] for item in volumes[mounts["/config"]]["configMap"]["items"]
    }


def test_prefect_helm_values_meet():
    server, worker = load(K8S / "prefect-server-values.yaml"), load(K8S / "prefect-worker-values.yaml")
    secrets = created_secrets()
    assert server["server"]["basicAuth"]["enabled"] and worker["worker"]["selfHostedServerApiConfig"]["basicAuth"]
    for auth in (server["server"]["basicAuth"], worker["worker"]["selfHostedServerApiConfig"]["basicAuth"]):
        assert "auth-string" in secrets[auth["existingSecret"]]  # the key the charts read
    assert "connection-string" in secrets[server["secret"]["name"]] and not server["postgresql"]["enabled"]
    api = worker["worker"]["selfHostedServerApiConfig"]["apiUrl"]
    assert api == f"http://{server['fullnameOverride']}.fineforge.svc.cluster.local:{server['service']['port']}/api"
    assert api == k8s_config_map()["PREFECT_API_URL"]
    for image in (server["global"]["prefect"]["image"], worker["worker"]["image"]):
        assert PINNED_TAG.match(f"{image['repository']}:{image['prefectTag']}")


def k8s_config_map() -> dict:
    return next(obj["data"] for obj in k8s_objects() if obj["kind"] == "ConfigMap")
