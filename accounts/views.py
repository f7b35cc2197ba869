"""The authentication routes (/v1/auth/…): guest login, Google sign-in, refresh, logout, me.

Tokens: the access token travels in the body, the refresh token only in the HttpOnly
`jan_refresh_token` cookie. Token answers are `Cache-Control: no-store` (RFC 6749 §5.1).
"""

from __future__ import annotations

import hmac
import json
import secrets
import shlex
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import google, selectors, services
from accounts.auth import Principal, bearer_token, principal_from_request
from accounts.authentication import AlternativeSchemes, principal_of
from accounts.serializers import (
    AuthAccessTokenOut,
    AuthGoogleCallbackIn,
    AuthGoogleLoginUrlOut,
    AuthLogoutOut,
    AuthMeOut,
)
from accounts.throttling import GoogleCallbackThrottle, GuestLoginThrottle, RefreshThrottle
from gateway.api import ERROR_RESPONSES, ErrorOut, parse
from gateway.errors import AuthenticationError, InvalidRequest, NotFound

TAGS = ["Authentication"]
_STATE_COOKIE_PATH = "/v1/auth/google"
_STATE_MAX_AGE = 5 * 60

REFRESH_COOKIE_PARAMETER = OpenApiParameter(
    "jan_refresh_token",
    OpenApiTypes.STR,
    OpenApiParameter.COOKIE,
    required=False,
    description="The refresh token, set by the token-issuing routes (HttpOnly).",
)
TOKEN_RESPONSES: dict[int, Any] = {200: AuthAccessTokenOut, **ERROR_RESPONSES}


def _cookie_flags() -> dict[str, Any]:
    # Outside development the cookies are Secure and same-site only; a dev front end on
    # plain http://localhost needs them without Secure, and Lax to follow its redirects.
    if settings.IS_DEV:
        return {"httponly": True, "secure": False, "samesite": "Lax"}
    return {"httponly": True, "secure": True, "samesite": "Strict"}


def _refresh_cookie(request: Request) -> str | None:
    return request.COOKIES.get(settings.REFRESH_COOKIE_NAME) or None


def _token_response(tokens: services.IssuedTokens) -> Response:
    body = {"object": "access.token", "access_token": tokens.access, "expires_in": tokens.access_expires_in}
    response = Response(AuthAccessTokenOut(body).data, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        settings.REFRESH_COOKIE_NAME,
        tokens.refresh,
        max_age=tokens.refresh_max_age,
        path="/",
        **_cookie_flags(),
    )
    return response


class GuestLoginView(APIView):
    authentication_classes = []
    throttle_classes = [GuestLoginThrottle]

    @extend_schema(
        operation_id="authGuestLogin",
        tags=TAGS,
        summary="Sign in as a new guest, or re-issue tokens for the refresh cookie",
        request=None,
        parameters=[REFRESH_COOKIE_PARAMETER],
        responses=TOKEN_RESPONSES,
    )
    def post(self, request: Request) -> Response:
        _, tokens = services.guest_login(refresh_raw=_refresh_cookie(request))
        return _token_response(tokens)


class GoogleLoginView(APIView):
    authentication_classes = []

    @extend_schema(
        operation_id="authGoogleLoginUrl",
        tags=TAGS,
        summary="Google's authorization URL; sets the jan_oauth_state cookie",
        responses={200: AuthGoogleLoginUrlOut, 503: ErrorOut, **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        state = secrets.token_urlsafe(16)
        url = google.authorize_url(state=state)
        response = Response(AuthGoogleLoginUrlOut({"object": "google.login.url", "url": url}).data)
        response.set_cookie(
            settings.OAUTH_STATE_COOKIE_NAME,
            state,
            max_age=_STATE_MAX_AGE,
            path=_STATE_COOKIE_PATH,
            **_cookie_flags(),
        )
        return response


def _check_state(request: Request, state: str) -> None:
    expected = request.COOKIES.get(settings.OAUTH_STATE_COOKIE_NAME) or ""
    if not expected or not state or not hmac.compare_digest(expected.encode(), state.encode()):
        raise InvalidRequest(
            "The OAuth state does not match this browser's sign-in attempt; start again.",
            param="state",
            code="invalid_oauth_state",
        )


class GoogleCallbackView(APIView):
    authentication_classes = []
    throttle_classes = [GoogleCallbackThrottle]

    @extend_schema(
        operation_id="authGoogleCallback",
        tags=TAGS,
        summary="Finish Google sign-in with the authorization code; issues tokens",
        request=AuthGoogleCallbackIn,
        parameters=[REFRESH_COOKIE_PARAMETER],
        responses={**TOKEN_RESPONSES, 409: ErrorOut, 502: ErrorOut, 503: ErrorOut},
    )
    def post(self, request: Request) -> Response:
        data = parse(AuthGoogleCallbackIn, request.data)
        _check_state(request, data["state"])
        identity = google.identity_from_code(code=data["code"], state=data["state"])
        _, tokens = services.google_sign_in(identity=identity, refresh_raw=_refresh_cookie(request))
        response = _token_response(tokens)
        response.delete_cookie(settings.OAUTH_STATE_COOKIE_NAME, path=_STATE_COOKIE_PATH)  # one use
        return response


class GoogleTestCallbackView(APIView):
    """Development only: where Google can redirect a developer's browser, which has no front end
    to POST the code. Answers a ready curl command; 404 in any other environment."""

    authentication_classes = []

    @extend_schema(
        operation_id="authGoogleTestCallback",
        tags=TAGS,
        summary="Development only: a curl command that completes the Google callback",
        parameters=[
            OpenApiParameter(
                "code", {"type": "string", "minLength": 1}, OpenApiParameter.QUERY, required=True
            ),
            OpenApiParameter(
                "state", {"type": "string", "minLength": 1}, OpenApiParameter.QUERY, required=True
            ),
        ],
        responses={(200, "text/plain"): OpenApiTypes.STR, **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> HttpResponse:
        if not settings.IS_DEV:
            raise NotFound(f"Unknown request URL: GET {request.path}.", code="unknown_url")
        code, state = request.query_params.get("code", ""), request.query_params.get("state", "")
        if not code or not state:
            raise InvalidRequest("Both 'code' and 'state' are required.", param="code")
        url = request.build_absolute_uri("/v1/auth/google/callback")
        body = json.dumps({"code": code, "state": state})
        command = " ".join(
            [
                "curl -i -X POST",
                shlex.quote(url),
                "-H 'Content-Type: application/json'",
                "-b",
                shlex.quote(f"{settings.OAUTH_STATE_COOKIE_NAME}={state}"),
                "-d",
                shlex.quote(body),
            ]
        )
        return HttpResponse(command + "\n", content_type="text/plain; charset=utf-8")


class RefreshTokenView(APIView):
    authentication_classes = []
    throttle_classes = [RefreshThrottle]

    @extend_schema(
        operation_id="authRefreshToken",
        tags=TAGS,
        summary="Rotate the refresh cookie and issue a new access token",
        parameters=[REFRESH_COOKIE_PARAMETER],
        auth=[{"RefreshCookieAuth": []}],  # type: ignore[list-item]  # a requirement object, not a name
        responses=TOKEN_RESPONSES,
    )
    def get(self, request: Request) -> Response:
        raw = _refresh_cookie(request)
        if raw is None:
            raise AuthenticationError("No refresh token cookie; sign in first.", code="missing_refresh_token")
        _, tokens = services.refresh_token_rotate(raw=raw)
        return _token_response(tokens)


class LogoutView(APIView):
    """POST only: a GET could be sent cross-site (a link or an image carries the Lax cookie) and
    sign the user out without their intent."""

    authentication_classes = []

    @extend_schema(
        operation_id="authLogout",
        tags=TAGS,
        summary="Revoke the refresh token and clear its cookie",
        request=None,
        parameters=[REFRESH_COOKIE_PARAMETER],
        auth=[{"RefreshCookieAuth": []}],  # type: ignore[list-item]  # a requirement object, not a name
        responses={200: AuthLogoutOut, **ERROR_RESPONSES},
    )
    def post(self, request: Request) -> Response:
        services.refresh_token_revoke(raw=_refresh_cookie(request))
        response = Response(AuthLogoutOut({"object": "logout", "status": "ok"}).data)
        response.delete_cookie(settings.REFRESH_COOKIE_NAME, path="/", samesite=_cookie_flags()["samesite"])
        return response


class AnyCredentialAuthentication(BaseAuthentication):
    """/me answers for any credential: a JWT, any API key, including an admin key.

    The principal layer resolves per route class; this picks the class the credential belongs
    to. JWTs resolve as "admin" because that class needs no project, and /me needs none.
    """

    def authenticate(self, request: Request) -> tuple[Any, Principal]:
        token = bearer_token(request._request.headers)
        is_data_key = token.startswith("sk-") and not token.startswith("sk-admin_")
        principal = principal_from_request(request._request, route="data" if is_data_key else "admin")
        return (None, principal)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class AnyCredentialAuthenticationScheme(AlternativeSchemes):  # type: ignore[no-untyped-call]
    target_class = "accounts.views.AnyCredentialAuthentication"
    name = "_AnyCredentialAuthentication"
    schemes = ("ApiKeyAuth", "AdminKeyAuth", "JwtAuth")


class MeView(APIView):
    authentication_classes = [AnyCredentialAuthentication]

    @extend_schema(
        operation_id="authMe",
        tags=TAGS,
        summary="The calling user",
        responses={200: AuthMeOut, **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        principal = principal_of(request)
        if principal.user_id is None:
            raise NotFound("This credential belongs to a service account, not a user.", code="user_not_found")
        return Response(AuthMeOut(selectors.user_get(user_id=principal.user_id)).data)
