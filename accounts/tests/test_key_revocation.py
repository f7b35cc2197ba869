"""Revoking a key is seen by another worker process within a second."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from organizations import services
from organizations.tests.factories import make_api_key

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.REDIS_URL or connection.vendor != "postgresql",
        reason="two processes need a shared database and Redis (.ci/run provides both)",
    ),
]

# The other worker: resolves the key through the same cache path, prints each verdict.
WORKER = """
import sys, time, django
django.setup()
from organizations import keycache
key_hash = sys.argv[1]
deadline = time.monotonic() + 15
while time.monotonic() < deadline:
    snapshot = keycache.snapshot_get(key_hash)
    print("usable" if snapshot and snapshot.usable else "refused", flush=True)
    if not (snapshot and snapshot.usable):
        break
    time.sleep(0.05)
"""


def test_revocation_reaches_another_process_within_a_second() -> None:
    key, raw = make_api_key()
    dsn = _test_dsn()  # the test database, for the primary and any replica alias alike
    env = dict(os.environ, DATABASE_URL=dsn, DB_POSTGRESQL_WRITE_DSN=dsn, DB_POSTGRESQL_READ1_DSN=dsn)
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, services.api_key_hash(raw)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "usable"  # warm in the other process
    revoked_at = time.monotonic()
    services.api_key_delete(key=key)
    # Timed at the verdict, not at the process's exit (interpreter shutdown is not revocation).
    refused_after = None
    for line in worker.stdout:
        if line.strip() == "refused":
            refused_after = time.monotonic() - revoked_at
            break
    worker.wait(timeout=10)
    assert refused_after is not None, "the other process never saw the key refused"
    assert refused_after < 1.5  # 1 s local tier + polling and process slack


def _test_dsn() -> str:
    db = settings.DATABASES["default"]
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
