"""The principal: who is calling, in which organization and project.

One resolution path serves DRF views (through accounts.authentication) and async views
(`aprincipal_from_request`). API keys resolve from the key cache with no database query once
warm; JWT users resolve their organization/project selection from the database.

Route classes:
- "data": inference and data APIs. Every credential but an admin key.
- "admin": the administration API. Admin keys and JWT users (views check the user's role).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Protocol

from asgiref.sync import sync_to_async
from django.http import HttpRequest

from gateway import context
from gateway.background import fire_and_forget, run_sync
from gateway.db_router import authoritative, principal_bind
from gateway.errors import AuthenticationError, Forbidden, NotFound
from organizations import keycache, selectors
from organizations.keycache import Budget, KeySnapshot, RateRule
from organizations.models import ApiKey
from organizations.services import api_key_hash, api_key_touch
from organizations.services.keys import KEY_PATTERN

RouteClass = Literal["data", "admin"]


class Headers(Protocol):
    """Case-insensitive header lookup: Django's request.headers, or the hot path's ASGI headers."""

    def get(self, key: str, /) -> str | None: ...


class AsgiHeaders(dict[str, str]):
    """An ASGI scope's headers as a case-insensitive mapping (repeated names: the last one wins)."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        super().__init__((name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in raw)

    def get(self, key: str, default: str | None = None, /) -> str | None:  # type: ignore[override]
        return super().get(key.lower(), default)


_TOUCH_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class Principal:
    kind: Literal["api_key", "jwt"]
    organization_id: int
    organization_public_id: str
    project_id: int | None
    project_public_id: str | None
    user_id: int | None
    user_public_id: str | None
    api_key_id: int | None = None
    api_key_public_id: str | None = None
    api_key_type: str | None = None
    service_account_id: int | None = None
    # The key's and the project's limits, so admission needs no query (organizations.ratelimits).
    rate_limits: tuple[RateRule, ...] = ()
    # Allow-lists of model ids or globs (the key's, the project's); a model must pass every one.
    model_access: tuple[tuple[str, ...], ...] = ()
    # Monthly budgets (the key's, the project's) as organizations.budgets checks them.
    budgets: tuple[Budget, ...] = ()

    @property
    def is_admin_key(self) -> bool:
        return self.api_key_type == ApiKey.Type.ADMIN


def _invalid(message: str = "Incorrect API key provided.") -> AuthenticationError:
    return AuthenticationError(message)


def bearer_token(headers: Headers) -> str:
    header = headers.get("Authorization")
    if not header:
        raise AuthenticationError(
            "You didn't provide an API key. Provide it in the Authorization header as 'Bearer YOUR_KEY'.",
            code="missing_api_key",
        )
    scheme, _, token = header.partition(" ")
    # Exactly "Bearer <token>": stray whitespace or another scheme is refused, not repaired.
    if scheme.lower() != "bearer" or not token or token != token.strip() or " " in token:
        raise _invalid("The Authorization header must be 'Bearer YOUR_KEY'.")
    return token


# --- API keys ---------------------------------------------------------------------------


def _check_key(snapshot: KeySnapshot | None, route: RouteClass) -> KeySnapshot:
    if snapshot is None or not snapshot.usable:
        raise _invalid()
    if snapshot.expires_at is not None and snapshot.expires_at <= time.time():
        raise _invalid("This API key has expired.")
    is_admin = snapshot.key_type == ApiKey.Type.ADMIN
    if route == "data" and is_admin:
        raise Forbidden("Admin API keys can only call the administration API.", code="admin_key_not_allowed")
    if route == "admin" and not is_admin:
        raise Forbidden("This route needs an admin API key.", code="admin_key_required")
    return snapshot


def _principal_for_key(
    snapshot: KeySnapshot,
    project_id: int | None,
    project_public_id: str | None,
    project_rules: tuple[RateRule, ...] = (),
    project_access: tuple[tuple[str, ...], ...] = (),
    project_budgets: tuple[Budget, ...] = (),
) -> Principal:
    return Principal(
        kind="api_key",
        organization_id=snapshot.organization_id,
        organization_public_id=snapshot.organization_public_id,
        project_id=project_id,
        project_public_id=project_public_id,
        user_id=snapshot.user_id,
        user_public_id=snapshot.user_public_id,
        api_key_id=snapshot.id,
        api_key_public_id=snapshot.public_id,
        api_key_type=snapshot.key_type,
        service_account_id=snapshot.service_account_id,
        # A project-bound key's entry holds its project's rules; an organization key's do not.
        rate_limits=snapshot.rate_limits + project_rules,
        model_access=snapshot.model_access + project_access,
        budgets=snapshot.budgets + project_budgets,
    )


def _fixed_project(snapshot: KeySnapshot, requested: str | None) -> bool:
    """Project-bound keys: a differing OpenAI-Project is not theirs (404)."""
    if requested and requested != snapshot.project_public_id:
        raise NotFound(f"No project with id '{requested}'.", param="OpenAI-Project", code="project_not_found")
    return True


ProjectChoice = tuple[
    int | None, str | None, tuple[RateRule, ...], tuple[tuple[str, ...], ...], tuple[Budget, ...]
]


def _organization_key_project(snapshot: KeySnapshot, requested: str | None) -> ProjectChoice:
    with authoritative():  # an archived project or a lowered limit must not be read as it was
        return _organization_key_project_read(snapshot, requested)


def _organization_key_project_read(snapshot: KeySnapshot, requested: str | None) -> ProjectChoice:
    if requested:
        project = (
            selectors.project_list(organization_id=snapshot.organization_id)
            .filter(public_id=requested)
            .first()
        )
        if project is None:
            raise NotFound(
                f"No project with id '{requested}'.", param="OpenAI-Project", code="project_not_found"
            )
    else:
        project = selectors.project_default_for_organization(organization_id=snapshot.organization_id)
    if project is None:
        return None, None, (), (), ()
    access = (tuple(project.allowed_models),) if project.allowed_models else ()
    rules = selectors.project_rate_rules(project_id=project.pk)
    return project.pk, project.public_id, rules, access, selectors.project_budgets(project=project)


def _check_organization_header(headers: Headers, organization_public_id: str) -> None:
    requested = headers.get("OpenAI-Organization")
    if requested and requested != organization_public_id:
        raise NotFound(
            f"No organization with id '{requested}'.",
            param="OpenAI-Organization",
            code="organization_not_found",
        )


_last_touch: dict[int, float] = {}


def _touch_due(key_id: int) -> bool:
    now = time.monotonic()
    if now - _last_touch.get(key_id, 0.0) < _TOUCH_INTERVAL_SECONDS:
        return False
    _last_touch[key_id] = now
    return True


def _key_principal_sync(headers: Headers, token: str, route: RouteClass) -> Principal:
    snapshot = _check_key(
        keycache.snapshot_get(api_key_hash(token)) if KEY_PATTERN.match(token) else None, route
    )
    _check_organization_header(headers, snapshot.organization_public_id)
    requested = headers.get("OpenAI-Project")
    project_rules: tuple[RateRule, ...] = ()
    project_access: tuple[tuple[str, ...], ...] = ()
    project_budgets: tuple[Budget, ...] = ()
    if snapshot.key_type == ApiKey.Type.ORGANIZATION and route == "data":
        project_id, project_public_id, project_rules, project_access, project_budgets = (
            _organization_key_project(snapshot, requested)
        )
    elif snapshot.project_id is not None and _fixed_project(snapshot, requested):
        project_id, project_public_id = snapshot.project_id, snapshot.project_public_id
    else:
        project_id, project_public_id = None, None
    if _touch_due(snapshot.id):
        api_key_touch(key_id=snapshot.id)
    return _principal_for_key(
        snapshot, project_id, project_public_id, project_rules, project_access, project_budgets
    )


# --- JWT ---------------------------------------------------------------------------------


def _jwt_principal(headers: Headers, token: str, route: RouteClass) -> Principal:
    # The user, memberships and limits decide what this caller may do: a replica that has not
    # applied a deactivation or a removed membership must not answer.
    with authoritative():
        return _jwt_principal_read(headers, token, route)


def _jwt_principal_read(headers: Headers, token: str, route: RouteClass) -> Principal:
    from rest_framework_simplejwt.exceptions import TokenError
    from rest_framework_simplejwt.tokens import AccessToken

    from accounts.models import User

    try:
        claims = AccessToken(token)  # type: ignore[arg-type]
    except TokenError:
        raise _invalid("Invalid or expired access token.") from None
    user = User.objects.filter(public_id=claims.get("sub"), is_active=True).first()
    if user is None:
        raise _invalid("Invalid or expired access token.")

    requested_org = headers.get("OpenAI-Organization")
    requested_project = headers.get("OpenAI-Project")
    if requested_org:
        organization = selectors.organization_get_for_user(user_id=user.pk, public_id=requested_org)
    elif requested_project:
        project = selectors.project_for_user_by_public_id(user_id=user.pk, public_id=requested_project)
        organization = project.organization
    else:
        default_project = selectors.project_default_for_user(user_id=user.pk)
        organization = default_project.organization if default_project else selectors.organization_default()

    project_id: int | None = None
    project_public_id: str | None = None
    project_access: tuple[tuple[str, ...], ...] = ()
    project_budgets: tuple[Budget, ...] = ()
    if requested_project:
        selected = (
            selectors.project_list_for_user(organization_id=organization.pk, user_id=user.pk)
            .filter(public_id=requested_project)
            .first()
        )
        if selected is None:
            raise NotFound(
                f"No project with id '{requested_project}'.", param="OpenAI-Project", code="project_not_found"
            )
        project_id, project_public_id = selected.pk, selected.public_id
        project_access = (tuple(selected.allowed_models),) if selected.allowed_models else ()
        project_budgets = selectors.project_budgets(project=selected)
    elif route == "data":
        candidates = selectors.project_list_for_user(organization_id=organization.pk, user_id=user.pk)
        default_project = selectors.project_default_for_user(user_id=user.pk)
        selected = (
            default_project
            if default_project and default_project.organization_id == organization.pk
            else candidates.order_by("pk").first()
        )
        if selected is not None:
            project_id, project_public_id = selected.pk, selected.public_id
            project_access = (tuple(selected.allowed_models),) if selected.allowed_models else ()
            project_budgets = selectors.project_budgets(project=selected)
    return Principal(
        kind="jwt",
        organization_id=organization.pk,
        organization_public_id=organization.public_id,
        project_id=project_id,
        project_public_id=project_public_id,
        user_id=user.pk,
        user_public_id=user.public_id,
        rate_limits=selectors.project_rate_rules(project_id=project_id) if project_id else (),
        model_access=project_access,
        budgets=project_budgets,
    )


# --- Entry points ---------------------------------------------------------------------------


def _finish(principal: Principal, route: RouteClass) -> Principal:
    if route == "data" and principal.project_id is None:
        raise Forbidden(
            "No project is selected for this credential; send OpenAI-Project.", code="project_required"
        )
    # From here on this request reads what its principal wrote, on any worker (gateway.db_router).
    principal_bind(
        user_id=principal.user_id, api_key_id=principal.api_key_id, organization_id=principal.organization_id
    )
    context.bind_log_fields(
        user_id=principal.user_public_id,
        organization_id=principal.organization_public_id,
        project_id=principal.project_public_id,
        api_key_id=principal.api_key_public_id,
    )
    return principal


def principal_from_request(request: HttpRequest, *, route: RouteClass = "data") -> Principal:
    """Sync resolution (DRF views, MCP tools). Raises AuthenticationError / Forbidden / NotFound."""
    return principal_from_headers(request.headers, route=route)


def principal_from_headers(headers: Headers, *, route: RouteClass = "data") -> Principal:
    token = bearer_token(headers)
    if token.startswith("sk-"):
        principal = _key_principal_sync(headers, token, route)
    else:
        principal = _jwt_principal(headers, token, route)
    return _finish(principal, route)


async def aprincipal_from_request(request: HttpRequest, *, route: RouteClass = "data") -> Principal:
    """Async resolution. A project key with a warm cache costs no thread hop and no query."""
    return await aprincipal_from_headers(request.headers, route=route)


async def aprincipal_from_headers(headers: Headers, *, route: RouteClass = "data") -> Principal:
    token = bearer_token(headers)
    if not token.startswith("sk-"):
        return await sync_to_async(principal_from_headers)(headers, route=route)
    snapshot = _check_key(
        await keycache.asnapshot_get(api_key_hash(token)) if KEY_PATTERN.match(token) else None, route
    )
    _check_organization_header(headers, snapshot.organization_public_id)
    requested = headers.get("OpenAI-Project")
    project_rules: tuple[RateRule, ...] = ()
    project_access: tuple[tuple[str, ...], ...] = ()
    project_budgets: tuple[Budget, ...] = ()
    if snapshot.key_type == ApiKey.Type.ORGANIZATION and route == "data":
        project_id, project_public_id, project_rules, project_access, project_budgets = await run_sync(
            _organization_key_project, snapshot, requested
        )
    elif snapshot.project_id is not None and _fixed_project(snapshot, requested):
        project_id, project_public_id = snapshot.project_id, snapshot.project_public_id
    else:
        project_id, project_public_id = None, None
    if _touch_due(snapshot.id):
        # Off the request path: nobody awaits it; a lost touch only delays last_used_at.
        fire_and_forget(api_key_touch, key_id=snapshot.id)
    return _finish(
        _principal_for_key(
            snapshot, project_id, project_public_id, project_rules, project_access, project_budgets
        ),
        route,
    )
