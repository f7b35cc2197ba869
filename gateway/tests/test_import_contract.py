"""The import-linter contract in pyproject.toml ([tool.importlinter]) refuses a leak between the
apps. Run on a copy of the tree (symlinks to the real packages) with one extra module."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "gateway",
    "accounts",
    "organizations",
    "inference",
    "conversations",
    "webtools",
    "responses",
    "mcp_server",
)
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _tree(tmp_path: Path, leak: tuple[str, str, str] | None) -> Path:
    """The repository's packages under `tmp_path`; with `leak` = (package, module, source), that
    package is a real directory of links to the real files plus one new module."""
    for package in PACKAGES:
        target = tmp_path / package
        if leak is not None and leak[0] == package:
            target.mkdir()
            for entry in (ROOT / package).iterdir():
                (target / entry.name).symlink_to(entry)
            (target / f"{leak[1]}.py").write_text(leak[2])
        else:
            target.symlink_to(ROOT / package)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_tree_keeps_the_contract(tmp_path: Path) -> None:
    result = _lint(_tree(tmp_path, None))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("leak", "broken"),
    [
        # The gateway sits below every app.
        (
            ("gateway", "leak", "from responses import selectors\n"),
            "gateway is not allowed to import responses",
        ),
        # The web tools sit below the Responses API and the MCP server.
        (
            ("webtools", "leak", "from mcp_server import resources\n"),
            "webtools is not allowed to import mcp_server",
        ),
        # The tenancy pair shares models, selectors and services, not sign-in flows.
        (
            ("organizations", "leak", "from accounts import google\n"),
            "organizations is not allowed to import accounts.google",
        ),
        # No app imports another app's views, even from a higher layer.
        (
            ("conversations", "leak", "from inference.views_chat import chat_completions\n"),
            "conversations is not allowed to import inference.views_chat",
        ),
    ],
)
def test_a_forbidden_import_breaks_the_contract(
    tmp_path: Path, leak: tuple[str, str, str], broken: str
) -> None:
    result = _lint(_tree(tmp_path, leak))
    assert result.returncode == 1, result.stdout + result.stderr
    assert broken in result.stdout
    assert f"{leak[0]}.{leak[1]}" in result.stdout
