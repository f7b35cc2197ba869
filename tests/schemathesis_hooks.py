"""Schemathesis hooks for gateway/tests/test_schemathesis.py (loaded through tests/schemathesis.toml).

`positive_data_acceptance` expects every request the schema allows to be accepted. A few refusals
are rules no OpenAPI document can state, because they depend on what is stored, on the clock or
on a protocol session rather than on the request's shape. Those, and only those, are let through
here, each named by its operations, status and error `param` / `code`, with why. Any other
refusal of a schema-valid request stays a failure: fix the schema or the behaviour instead of
adding to this list.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import schemathesis


class Refusal(NamedTuple):
    why: str
    statuses: frozenset[int]
    codes: frozenset[str | int]  # the envelope's `error.code` (a JSON-RPC error's integer code)
    params: str | None = None  # a regular expression the envelope's `error.param` matches; None: any
    paths: tuple[str, ...] = ()  # path prefixes; empty: every operation


EXPECTED_REFUSALS = (
    Refusal(
        "A page cursor must be the id of an object in that list: which ids exist is stored state.",
        statuses=frozenset({400}),
        codes=frozenset({"invalid_request"}),
        params="after|before",
    ),
    Refusal(
        "What the object's current state allows: a user who is already a member (or already invited), "
        "the organization's or project's last owner leaving, a new key or service account in an "
        "archived project.",
        statuses=frozenset({400}),
        codes=frozenset({"member_exists", "invite_exists", "last_owner", "project_archived"}),
    ),
    Refusal(
        "An id or code in the body must name a stored object the caller may use: a project to invite "
        "to, a member to add to a project or organization, an invite to accept.",
        statuses=frozenset({400}),
        codes=frozenset({"project_not_found", "user_not_found", "invalid_invite_code"}),
    ),
    Refusal(
        "A new key's expires_at is in the future (the clock); a model server's base_url resolves to a "
        "public address (DNS).",
        statuses=frozenset({400}),
        codes=frozenset({"invalid_request"}),
        params="expires_at|base_url",
    ),
    Refusal(
        "Google sign-in's callback: the state must be the one /v1/auth/google/login gave this browser "
        "(in a cookie), and the code one Google issued for it.",
        statuses=frozenset({400}),
        codes=frozenset({"invalid_oauth_state", "oauth_code_exchange_failed"}),
        paths=("/v1/auth/google/callback",),
    ),
    Refusal(
        "A Responses request's tools have distinct names (web_search's own included) and tool_choice names "
        "one of them: relations between array elements and fields that JSON Schema cannot state.",
        statuses=frozenset({400}),
        codes=frozenset({"duplicate_tool", "unknown_tool"}),
        paths=("/v1/responses",),
    ),
    Refusal(
        "Usage and cost reports: end_time after start_time, a range of at most 3 years back from now "
        "(relative to the clock), a limit whose maximum depends on bucket_width, and a page cursor "
        "from a previous answer. OpenAPI relates no two query parameters.",
        statuses=frozenset({400}),
        codes=frozenset({"invalid_request"}),
        params="start_time|end_time|limit|page",
        paths=("/v1/organization/costs", "/v1/organization/usage", "/v1/organization/{org_id}/usage"),
    ),
    Refusal(
        "MCP is JSON-RPC over HTTP: whether a message is acceptable depends on the session it names, "
        "the negotiated protocol revision (2026-07-28 has no GET or DELETE) and each method's params, "
        "which the document leaves to the MCP specification (it describes the HTTP envelope only).",
        statuses=frozenset({400, 404, 405, 406}),
        codes=frozenset({-32600, -32601, -32602, -32000, -32001}),
        paths=("/v1/mcp", "/v1/conv/mcp"),
    ),
)


def _error(response: Any) -> tuple[Any, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    return error.get("param"), error.get("code")


def expected(method: str, path: str, status: int, param: Any, code: Any) -> Refusal | None:
    for refusal in EXPECTED_REFUSALS:
        if (
            status in refusal.statuses
            and code in refusal.codes
            and (refusal.params is None or re.fullmatch(refusal.params, str(param)) is not None)
            and (not refusal.paths or any(path.startswith(prefix) for prefix in refusal.paths))
        ):
            return refusal
    return None


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but a positive-data rejection listed in EXPECTED_REFUSALS."""
    if type(failure).__name__ != "RejectedPositiveData" or response is None:
        return True
    error = _error(response)
    if error is None:
        return True
    return expected(case.method.upper(), case.operation.path, response.status_code, *error) is None
