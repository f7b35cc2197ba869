"""Two DRF views (one per route class) and one async view, to test authentication alone."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.auth import Principal, aprincipal_from_request
from accounts.authentication import AdminAuthentication, DataAuthentication
from gateway import errors
from gateway.urls import handler404, handler500  # noqa: F401 -- the real handlers
from gateway.urls import urlpatterns as real_urlpatterns


def _describe(principal: Principal) -> dict[str, object]:
    return {
        "kind": principal.kind,
        "organization": principal.organization_public_id,
        "project": principal.project_public_id,
        "user": principal.user_public_id,
        "key": principal.api_key_public_id,
        "key_type": principal.api_key_type,
    }


class DataView(APIView):
    authentication_classes = [DataAuthentication]

    def get(self, request: Request) -> Response:
        return Response(_describe(request.auth))


class AdminView(APIView):
    authentication_classes = [AdminAuthentication]

    def get(self, request: Request) -> Response:
        return Response(_describe(request.auth))


async def async_data_view(request: HttpRequest) -> HttpResponse:
    try:
        principal = await aprincipal_from_request(request)
    except errors.GatewayError as err:
        return errors.json_error(err)
    return JsonResponse(_describe(principal))


urlpatterns = [
    path("test/data", DataView.as_view()),
    path("test/admin", AdminView.as_view()),
    path("test/async-data", async_data_view),
    *real_urlpatterns,
]
