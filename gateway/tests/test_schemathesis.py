"""The gateway's OpenAPI document and its behaviour agree: Schemathesis (`st`), every check.

The gateway runs in this process (LiveGateway, on the test database); two `st` processes test it at
once from its own document (/api/schema), with the settings in tests/schemathesis.toml (a fixed
seed, 3 examples per operation, the phases each operation runs) and the hooks in
tests/schemathesis_hooks.py (the few refusals no schema can state, each with why):

- with a project key, every operation but the administration API's (the public ones included);
- with an admin key, the administration API.

Any failure of any check fails the test, with Schemathesis' report (each failure's request as a
curl command). To run the same by hand against a running gateway:

    .venv/bin/st --config-file tests/schemathesis.toml run "http://127.0.0.1:8080/api/schema?format=json" \\
        -H "Authorization: Bearer $KEY" --checks all --exclude-by '/security/0/AdminKeyAuth == []'
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.conf import settings

from organizations.models import ApiKey
from organizations.tests.factories import make_api_key, make_org, org_owner
from tests.fakes.google_idp import FakeGoogleIdP
from tests.live_server import LiveGateway

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ST = Path(sys.executable).with_name("st")
CONFIG = Path(settings.BASE_DIR) / "tests" / "schemathesis.toml"
ADMIN_OPERATIONS = "/security/0/AdminKeyAuth == []"
DEADLINE_SECONDS = 600


def _st(gateway: LiveGateway, key: str, selection: list[str], log: Path) -> subprocess.Popen[bytes]:
    command = [
        str(ST),
        *("--config-file", str(CONFIG), "--no-color"),
        "run",
        f"{gateway.url}/api/schema?format=json",
        *("-H", f"Authorization: Bearer {key}"),
        *("--checks", "all"),
        *selection,
    ]
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=settings.BASE_DIR, stdout=out, stderr=subprocess.STDOUT)


def test_schema_and_behaviour_agree(live_gateway: LiveGateway, google_idp: FakeGoogleIdP) -> None:
    _, project_key = make_api_key()
    admin_org = make_org()
    _, admin_key = make_api_key(org=admin_org, key_type=ApiKey.Type.ADMIN, user=org_owner(admin_org))
    logs = Path(tempfile.mkdtemp(prefix="schemathesis-"))
    runs = {
        logs / "project-key.log": (project_key, ["--exclude-by", ADMIN_OPERATIONS]),
        logs / "admin-key.log": (admin_key, ["--include-by", ADMIN_OPERATIONS]),
    }
    started = {log: _st(live_gateway, key, selection, log) for log, (key, selection) in runs.items()}
    failed = []
    for log, process in started.items():
        try:
            code = process.wait(timeout=DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        if code != 0:
            failed.append(f"--- {log.stem} (exit {code}) ---\n{log.read_text()}")
    assert not failed, "\n".join(failed)
