"""The real URLconf plus a few views that fail on purpose, for the error-envelope tests."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway.api import parse
from gateway.urls import handler400, handler403, handler404, handler500  # noqa: F401 -- the real handlers
from gateway.urls import urlpatterns as real_urlpatterns


class _EchoIn(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=5)
    count = serializers.IntegerField(min_value=1)


class EchoView(APIView):
    def post(self, request: Request) -> Response:
        return Response(parse(_EchoIn, request.data))


def crash(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom: a secret traceback detail")


def forbidden(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied


urlpatterns = [
    path("test/echo", EchoView.as_view()),
    path("test/crash", crash),
    path("test/forbidden", forbidden),
    *real_urlpatterns,
]
