"""docker-compose.yml and the Dockerfile: a valid Compose file that boots the gateway in production
mode from one prebuilt image, with health checks everywhere, and an image that is multi-stage,
unprivileged and carries the runtime lock only.

The Compose file is checked against the Compose Specification's JSON schema (vendored in
deploy/compose with its licence) and, where the Docker Compose plugin is installed, by
`docker compose config` too. Building the image needs a Docker daemon, which this test does not
assume: it reads the Dockerfile instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
GATEWAY_SERVICES = ("migrate", "web", "worker", "beat")
LONG_RUNNING = ("postgres", "redis", "web", "worker", "beat")
REQUIRED_SECRETS = (
    "DJANGO_SECRET_KEY",
    "JWT_SECRET",
    "APIKEY_SECRET",
    "MODEL_PROVIDER_SECRET",
    "POSTGRES_PASSWORD",
)
# The one writable place in the gateway's containers: a tmpfs, fresh at every container start.
TMPFS = "/tmp"  # noqa: S108 -- a private tmpfs per container, not a shared directory
SAMPLE_ENVIRONMENT = {name: f"sample-{name.lower()}" for name in REQUIRED_SECRETS}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}; $$ is a literal $.
_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, environment: dict[str, str]) -> str:
    """The file as Compose sees it with this environment (the subset of its syntax used here)."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        value = environment.get(name)
        if op and op.endswith("?") and not value:
            raise KeyError(f"{name}: {arg}")
        if value is None or (op == ":-" and value == ""):
            return (arg or "") if op and op.endswith("-") else ""
        return value

    return _VARIABLE.sub(substitute, text)


def compose(environment: dict[str, str] | None = None) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        interpolate(COMPOSE_FILE.read_text(), environment or SAMPLE_ENVIRONMENT)
    )
    return loaded


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    # An empty interpolation leaves YAML a null: Compose passes it as an empty string.
    return {key: "" if value is None else str(value) for key, value in service.get("environment", {}).items()}


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(
        float(number) * units[unit] for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    )


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    instructions = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, arguments = stripped.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


@pytest.mark.parametrize("interpolated", [False, True], ids=["as-written", "interpolated"])
def test_compose_file_follows_the_compose_specification(interpolated: bool) -> None:
    schema = json.loads((ROOT / "deploy" / "compose" / "compose-spec.json").read_text())
    document = compose() if interpolated else yaml.safe_load(COMPOSE_FILE.read_text())
    errors = [
        f"{error.json_path}: {error.message}"
        for error in jsonschema.Draft202012Validator(schema).iter_errors(document)
    ]
    assert errors == []


def test_the_schema_check_catches_a_misspelt_key() -> None:
    schema = json.loads((ROOT / "deploy" / "compose" / "compose-spec.json").read_text())
    document = compose()
    document["services"]["beat"]["healthcheck"]["intervall"] = "5s"
    assert not jsonschema.Draft202012Validator(schema).is_valid(document)


def test_docker_compose_config_accepts_it() -> None:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode
    ):
        pytest.skip("the Docker Compose plugin is not installed; the schema test above covers the file")
    result = subprocess.run(
        [docker, "compose", "--file", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, **SAMPLE_ENVIRONMENT},
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_real_secrets() -> None:
    for name in REQUIRED_SECRETS:
        with pytest.raises(KeyError, match=name):
            compose({key: value for key, value in SAMPLE_ENVIRONMENT.items() if key != name})
    web = environment_of(compose()["services"]["web"])
    assert web["DJANGO_SECRET_KEY"] == SAMPLE_ENVIRONMENT["DJANGO_SECRET_KEY"]
    assert SAMPLE_ENVIRONMENT["POSTGRES_PASSWORD"] in web["DB_POSTGRESQL_WRITE_DSN"]


def test_gateway_services_run_one_built_image_in_production_mode() -> None:
    services = compose()["services"]
    images = {services[name]["image"] for name in GATEWAY_SERVICES}
    assert len(images) == 1, images
    for name in GATEWAY_SERVICES:
        service = services[name]
        assert service["build"]["context"] == ".", name
        assert service["build"].get("dockerfile", "Dockerfile") == "Dockerfile", name
        command = " ".join(service["command"]) if isinstance(service["command"], list) else service["command"]
        assert "pip" not in command.split(), f"{name} installs at start"
        assert "volumes" not in service, f"{name} must run the image's code, not a mounted checkout"
        env = environment_of(service)
        assert env["GATEWAY_ENV"] == "prod", name
        assert env["DJANGO_ALLOWED_HOSTS"], f"{name}: prod refuses to start without DJANGO_ALLOWED_HOSTS"
        assert env["DB_POSTGRESQL_WRITE_DSN"].startswith("postgres://"), name
        assert env["REDIS_URL"].startswith("redis://"), name
        # Unprivileged and read-only, as in Kubernetes.
        assert service["user"].split(":")[0] not in ("0", "root"), name
        assert service["read_only"] is True, name
        assert TMPFS in service["tmpfs"], name
        assert "no-new-privileges:true" in service["security_opt"], name
    assert services["web"]["command"] == ["python", "-m", "gateway.server"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "gateway", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "gateway", "beat"]


def test_web_shares_metrics_through_a_fresh_directory_and_drains_before_the_kill() -> None:
    web = compose()["services"]["web"]
    env = environment_of(web)
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith(TMPFS + "/"), (
        "must be on the tmpfs, fresh at each start"
    )
    assert env["HOST"] == "0.0.0.0"
    assert web["ports"] == [f"8080:{env['PORT']}"]
    assert seconds(web["stop_grace_period"]) >= float(env["SHUTDOWN_DRAIN_SECONDS"]) + 10
    worker = compose()["services"]["worker"]
    assert seconds(worker["stop_grace_period"]) > float(environment_of(worker)["CELERY_TASK_TIME_LIMIT"])


def test_beat_writes_its_schedule_to_the_tmpfs() -> None:
    beat = compose()["services"]["beat"]
    schedule = beat["command"][beat["command"].index("--schedule") + 1]
    assert schedule.startswith(TMPFS + "/")


def test_every_long_running_service_has_a_health_check() -> None:
    services = compose()["services"]
    assert set(services) == {*LONG_RUNNING, "migrate"}
    for name in LONG_RUNNING:
        check = services[name]["healthcheck"]
        assert not check.get("disable", False), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    assert "inspect ping" in " ".join(services["worker"]["healthcheck"]["test"])
    assert "celerybeat-schedule" in " ".join(services["beat"]["healthcheck"]["test"])


def test_migrations_run_once_before_anything_serves() -> None:
    services = compose()["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert migrate["restart"] == "no"
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, (
            name
        )
        assert "migrate" not in services[name]["command"], name


def test_host_docker_internal_resolves_wherever_it_is_used() -> None:
    services = compose()["services"]
    for name, service in services.items():
        if "host.docker.internal" in json.dumps(service) or name in GATEWAY_SERVICES:
            assert "host.docker.internal:host-gateway" in service.get("extra_hosts", []), name


def test_image_is_multi_stage_unprivileged_with_the_runtime_lock_only() -> None:
    build, runtime = stages()[0], stages()[-1]
    assert len(stages()) >= 2
    build_runs = " ".join(arguments for keyword, arguments in build if keyword == "RUN")
    installs = re.findall(r"(?:pip install|uv pip install)[^&]*", build_runs)
    assert [install for install in installs if "--requirement /tmp/requirements.lock" in install], installs
    assert not [line for line in dockerfile_instructions() if "requirements-dev" in line[1]], (
        "runtime lock only"
    )
    # The static files are collected at build time: the running container cannot write them.
    assert "manage.py collectstatic" in build_runs
    runtime_runs = " ".join(arguments for keyword, arguments in runtime if keyword == "RUN")
    assert not {"pip", "uv"} & set(runtime_runs.split()), (
        "the runtime stage copies the virtualenv, it installs nothing"
    )
    (user,) = [arguments for keyword, arguments in runtime if keyword == "USER"]
    assert user.split(":")[0] not in ("0", "root")
    assert [keyword for keyword, _ in runtime].index("USER") > max(
        position for position, (keyword, _) in enumerate(runtime) if keyword in ("RUN", "COPY")
    ), "everything after USER runs unprivileged"
    copies = [arguments for keyword, arguments in runtime if keyword == "COPY"]
    assert all(arguments.startswith("--from=build") for arguments in copies), copies
    (cmd,) = [arguments for keyword, arguments in runtime if keyword == "CMD"]
    assert json.loads(cmd) == ["python", "-m", "gateway.server"]


def test_build_context_leaves_out_local_state_and_secrets() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".data", ".env", "**/__pycache__", "*.sqlite3"} <= ignored


@pytest.mark.slow
def test_image_builds_and_runs_unprivileged_on_a_read_only_root() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True, check=False).returncode:
        pytest.skip("no Docker daemon to build the image with; the Dockerfile test above checks its shape")
    tag = "jan-gateway:test-build"
    build = subprocess.run(
        [docker, "build", "--tag", tag, str(ROOT)], capture_output=True, text=True, check=False
    )
    assert build.returncode == 0, build.stderr[-4000:]
    # What every container of the compose file and the manifests relies on: not root, the static
    # files in the image, settings that load with a read-only root and /tmp as the only writable place.
    script = (
        'test "$(id -u)" != 0'
        " && test -f /app/.data/static/admin/css/base.css"
        " && python manage.py check --fail-level ERROR"
        " && python -c 'import gateway.asgi'"
    )
    run = subprocess.run(
        [
            docker,
            "run",
            "--rm",
            "--read-only",
            "--tmpfs",
            TMPFS,
            "--env",
            "GATEWAY_ENV=test",
            # Served mode, as deployed (nothing here connects): the embedded mode would create its
            # SQLite and broker folders under the read-only data directory.
            "--env",
            "DB_POSTGRESQL_WRITE_DSN=postgres://gateway@127.0.0.1:5432/gateway",
            "--env",
            "REDIS_URL=redis://127.0.0.1:6379/0",
            tag,
            "sh",
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]


def test_every_variable_compose_sets_is_one_the_gateway_reads() -> None:
    settings_source = (ROOT / "gateway" / "settings.py").read_text()
    read = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', settings_source))
    # Read by the web server and the processes' command lines rather than by the settings.
    read |= {"HOST", "PORT", "WEB_CONCURRENCY", "SHUTDOWN_DRAIN_SECONDS"}
    services = compose()["services"]
    for name in GATEWAY_SERVICES:
        assert set(environment_of(services[name])) - read == set(), name
