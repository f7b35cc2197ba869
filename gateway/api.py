"""Small DRF helpers shared by every app's views."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class ErrorDetailOut(serializers.Serializer[Any]):
    message = serializers.CharField()
    type = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    code = serializers.CharField(allow_null=True)


class ErrorOut(serializers.Serializer[Any]):
    error = ErrorDetailOut()


ERROR_RESPONSES: dict[int, type[serializers.Serializer[Any]]] = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    429: ErrorOut,
}


def parse(serializer_class: type[serializers.Serializer[Any]], data: Any) -> dict[str, Any]:
    """Validate input; failures become InvalidRequest through the exception handler."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
