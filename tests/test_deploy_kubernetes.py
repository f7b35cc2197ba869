"""The Kubernetes manifests in deploy/kubernetes: valid for a current Kubernetes, and shaped so the
gateway runs safely at scale (one beat, probes on the right paths, zero-downtime rollouts, drains
that finish, no root, migrations in one Job, secrets only in a Secret).

Reads the YAML only: no cluster is needed. The schema check is kubernetes-validate's strict mode
against the schemas it ships for the release below, offline.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.37.0"
LAYERS = ("base", "production")
SECRET_NAMES = ("DJANGO_SECRET_KEY", "JWT_SECRET", "APIKEY_SECRET", "MODEL_PROVIDER_SECRET")
# Read by the processes' command lines and the web server, not by gateway/settings.py.
PROCESS_VARIABLES = {"HOST", "PORT", "WEB_CONCURRENCY", "CELERY_CONCURRENCY", "SHUTDOWN_DRAIN_SECONDS"}

# Every container mounts a volume here: the only writable place besides the ones it names.
WRITABLE_TMP = "/tmp"  # noqa: S108 -- a per-pod emptyDir, not a shared host directory

Resource = dict[str, Any]


def load(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def layer(name: str) -> list[Resource]:
    return load(KUBE / "rendered" / f"{name}.yaml")


def one(resources: list[Resource], kind: str, name: str) -> Resource:
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_specs(resources: list[Resource]) -> Iterator[tuple[str, dict[str, Any]]]:
    for resource in resources:
        if resource["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield resource["metadata"]["name"], resource["spec"]["template"]["spec"]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def config_value(resources: list[Resource], key: str) -> str:
    value: str = one(resources, "ConfigMap", "gateway-config")["data"][key]
    return value


def command_line(container: dict[str, Any]) -> str:
    return " ".join([*container.get("command", []), *container.get("args", [])])


def manifest_files() -> list[Path]:
    files = sorted((KUBE / "base").glob("*.yaml")) + sorted((KUBE / "rendered").glob("*.yaml"))
    files.append(KUBE / "secret.example.yaml")
    files.append(KUBE / "production" / "namespace.yaml")
    return [path for path in files if path.name != "kustomization.yaml"]


@pytest.mark.parametrize("path", manifest_files(), ids=lambda path: str(path.relative_to(KUBE)))
def test_every_manifest_validates_against_the_kubernetes_schemas_strictly(path: Path) -> None:
    for resource in load(path):
        # Raises on a schema violation, an unknown field (strict) or an unknown kind.
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_a_misspelt_field_fails_the_schema_check() -> None:
    web = one(layer("base"), "Deployment", "gateway-web")
    web["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, KUBERNETES_VERSION, strict=True)


def test_the_rendered_files_are_what_the_kustomizations_produce() -> None:
    import runpy

    render = runpy.run_path(str(KUBE / "render.py"))
    for name in LAYERS:
        assert (KUBE / "rendered" / f"{name}.yaml").read_text() == render["rendered_text"](name), (
            f"rendered/{name}.yaml is out of date: run .venv/bin/python deploy/kubernetes/render.py"
        )


@pytest.mark.parametrize("name", LAYERS)
def test_exactly_one_beat_replaced_never_overlapped(name: str) -> None:
    resources = layer(name)
    beats = [
        workload
        for workload, pod in pod_specs(resources)
        if any("beat" in command_line(container).split() for container in pod["containers"])
    ]
    assert beats == ["gateway-beat"], "beat must run in exactly one workload"
    beat = one(resources, "Deployment", "gateway-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    autoscaled = {
        r["spec"]["scaleTargetRef"]["name"] for r in resources if r["kind"] == "HorizontalPodAutoscaler"
    }
    assert "gateway-beat" not in autoscaled


@pytest.mark.parametrize("name", LAYERS)
def test_beat_schedule_file_is_on_a_writable_volume(name: str) -> None:
    beat = one(layer(name), "Deployment", "gateway-beat")["spec"]["template"]["spec"]
    argv = beat["containers"][0]["command"]
    schedule = argv[argv.index("--schedule") + 1]
    mounts = [m["mountPath"] for m in beat["containers"][0]["volumeMounts"]]
    assert any(schedule.startswith(mount.rstrip("/") + "/") for mount in mounts), (schedule, mounts)


@pytest.mark.parametrize("name", LAYERS)
def test_web_probes_rollout_drain_and_service(name: str) -> None:
    resources = layer(name)
    web = one(resources, "Deployment", "gateway-web")
    assert web["spec"]["replicas"] >= 2
    assert web["spec"]["strategy"]["type"] == "RollingUpdate"
    assert web["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = web["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][-1].endswith("python -m gateway.server")
    port_names = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthcheck"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in port_names
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert int(env["PORT"]) == port_names["http"]
    assert env["HOST"] == "0.0.0.0"

    # The pod may be killed only after the preStop pause and the whole drain period have passed.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = int(config_value(resources, "SHUTDOWN_DRAIN_SECONDS"))
    assert pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + drain + 5

    service = one(resources, "Service", "gateway-web")
    labels = web["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= set(port_names)
    assert service["spec"].get("sessionAffinity", "None") == "None", "web pods are stateless"


@pytest.mark.parametrize("name", LAYERS)
def test_web_has_a_disruption_budget_and_autoscalers_on_cpu(name: str) -> None:
    resources = layer(name)
    web = one(resources, "Deployment", "gateway-web")
    web_labels = web["spec"]["template"]["metadata"]["labels"]
    pdb = one(resources, "PodDisruptionBudget", "gateway-web")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= web_labels.items()
    if "maxUnavailable" in pdb["spec"]:
        assert pdb["spec"]["maxUnavailable"] in (1, "1")
    else:
        assert 1 <= int(pdb["spec"]["minAvailable"]) < web["spec"]["replicas"]

    for target, minimum in (("gateway-web", 2), ("gateway-worker", 1)):
        hpa = one(resources, "HorizontalPodAutoscaler", target)
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": target,
        }
        assert hpa["spec"]["minReplicas"] >= minimum
        assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
        metrics = [m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
        assert "cpu" in metrics
        deployment = one(resources, "Deployment", target)
        for resource_container in deployment["spec"]["template"]["spec"]["containers"]:
            # Utilization is relative to the request: without one the HPA cannot compute it.
            assert "cpu" in resource_container["resources"]["requests"]


@pytest.mark.parametrize("name", LAYERS)
def test_worker_is_given_time_to_finish_a_background_run(name: str) -> None:
    resources = layer(name)
    worker = one(resources, "Deployment", "gateway-worker")
    pod = worker["spec"]["template"]["spec"]
    assert command_line(pod["containers"][0]).startswith("celery -A gateway worker")
    assert pod["terminationGracePeriodSeconds"] > int(config_value(resources, "CELERY_TASK_TIME_LIMIT"))
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("name", LAYERS)
def test_migrations_run_in_one_job_and_nowhere_else(name: str) -> None:
    resources = layer(name)
    job = one(resources, "Job", "gateway-migrate")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    for workload, pod in pod_specs(resources):
        for container in containers(pod):
            words = shlex.split(command_line(container))
            if workload != "gateway-migrate" and "migrate" in words:
                # Serving pods may only wait for the Job: `migrate --check` changes nothing.
                assert "--check" in words, f"{workload}/{container['name']} runs migrate"


@pytest.mark.parametrize("name", LAYERS)
def test_every_pod_runs_unprivileged_on_a_read_only_root(name: str) -> None:
    resources = layer(name)
    workloads = list(pod_specs(resources))
    assert {workload for workload, _ in workloads} == {
        "gateway-web",
        "gateway-worker",
        "gateway-beat",
        "gateway-migrate",
    }
    for workload, pod in workloads:
        assert pod["securityContext"]["runAsNonRoot"] is True, workload
        assert pod["securityContext"]["runAsUser"] != 0, workload
        assert pod["automountServiceAccountToken"] is False, workload
        mounted = {volume["name"] for volume in pod.get("volumes", [])}
        for container in containers(pod):
            where = f"{workload}/{container['name']}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert not security.get("privileged", False), where
            assert security.get("runAsUser", 1) != 0, where
            # The only writable places are volumes, and /tmp is one of them.
            assert {m["name"] for m in container.get("volumeMounts", [])} <= mounted, where
            assert WRITABLE_TMP in {m["mountPath"] for m in container.get("volumeMounts", [])}, where
            multiproc = {e["name"]: e.get("value") for e in container.get("env", [])}.get(
                "PROMETHEUS_MULTIPROC_DIR"
            )
            if multiproc:
                assert multiproc.startswith(WRITABLE_TMP + "/"), where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{where} {kind}"
            assert container["image"].rsplit(":", 1)[0].endswith("jan-gateway"), where
            assert container["image"].rsplit(":", 1)[1] not in ("", "latest"), where


@pytest.mark.parametrize("name", LAYERS)
def test_settings_come_from_the_configmap_and_secrets_from_the_secret(name: str) -> None:
    resources = layer(name)
    config = one(resources, "ConfigMap", "gateway-config")["data"]
    assert config["GATEWAY_ENV"] == "prod"
    assert config["DJANGO_ALLOWED_HOSTS"], "prod refuses to start without it"
    secretish = re.compile(r"SECRET|PASSWORD|TOKEN|_DSN$|^REDIS_URL$|API_KEY")
    assert not [key for key in config if secretish.search(key)], "secrets belong in the Secret"
    assert not [r for r in resources if r["kind"] == "Secret"], "the layers never ship a Secret"
    for workload, pod in pod_specs(resources):
        for container in containers(pod):
            sources = container.get("envFrom", [])
            assert {"configMapRef": {"name": "gateway-config"}} in sources, workload
            assert {"secretRef": {"name": "gateway-secrets"}} in sources, workload


def test_every_variable_the_manifests_set_is_one_the_gateway_reads() -> None:
    settings_source = (ROOT / "gateway" / "settings.py").read_text()
    read = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', settings_source))
    if 'f"DB_POSTGRESQL_READ{_index}_DSN"' in settings_source:  # replicas are read by number
        read |= {f"DB_POSTGRESQL_READ{index}_DSN" for index in range(1, 10)}
    names = set(one(layer("base"), "ConfigMap", "gateway-config")["data"])
    names |= set(load(KUBE / "secret.example.yaml")[0]["stringData"])
    for _, pod in pod_specs(layer("base")):
        names |= {item["name"] for c in containers(pod) for item in c.get("env", [])}
    assert names - read - PROCESS_VARIABLES == set()


def test_the_secret_example_holds_no_values() -> None:
    (secret,) = load(KUBE / "secret.example.yaml")
    assert secret["kind"] == "Secret"
    assert secret["metadata"]["name"] == "gateway-secrets"
    assert "data" not in secret
    values = secret["stringData"]
    assert set(SECRET_NAMES) | {"DB_POSTGRESQL_WRITE_DSN", "REDIS_URL", "METRICS_TOKEN"} <= set(values)
    # Empty on purpose: GATEWAY_ENV=prod refuses to start with an empty secret, so an unfilled copy
    # can never run with a value anyone could read here.
    assert all(value == "" for value in values.values()), values


@pytest.mark.parametrize("name", LAYERS)
def test_prometheus_scrapes_metrics_with_the_token(name: str) -> None:
    resources = layer(name)
    web = one(resources, "Deployment", "gateway-web")
    annotations = web["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == str(
        web["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    )
    assert config_value(resources, "METRICS_ENABLED") == "true"

    (monitor,) = load(KUBE / "monitoring" / "servicemonitor.yaml")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "ServiceMonitor"
    service = one(resources, "Service", "gateway-web")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "gateway-secrets", "key": "METRICS_TOKEN"},
    }
    assert "METRICS_TOKEN" in load(KUBE / "secret.example.yaml")[0]["stringData"]


def test_production_runs_in_its_own_namespace_with_a_pinned_registry_image() -> None:
    resources = layer("production")
    namespace = one(resources, "Namespace", "jan-gateway")
    assert resources[0] is namespace, "the namespace must be created before what lives in it"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for resource in resources[1:]:
        assert resource["metadata"]["namespace"] == "jan-gateway", resource["metadata"]["name"]
    images = {c["image"] for _, pod in pod_specs(resources) for c in containers(pod)}
    assert images == {"registry.example.com/jan-gateway:0.1.0"}
    web = one(resources, "Deployment", "gateway-web")["spec"]["template"]["spec"]
    assert {c["topologyKey"] for c in web["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
