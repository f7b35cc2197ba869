"""Small DRF helpers shared by every app's views."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, ClassVar

from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers
from rest_framework.fields import empty

from gateway.errors import InvalidRequest


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


class StrictIn(serializers.Serializer[Any]):
    """Refuses fields it does not know, so a typo is a 400 rather than silently ignored."""

    # The docstring above is every input component's description in the OpenAPI document, which
    # also says `additionalProperties: false` (StrictInSchema). The method also refuses numbers
    # and booleans where a string is documented: DRF's CharField would store 0 as "0".

    # JSON Schema keywords for what `validate` checks across fields (`not`, `oneOf`), added to
    # the component so the document states every rule a well-formed body must follow.
    schema_rules: ClassVar[dict[str, Any]] = {}

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = set(data) - set(self.fields)
            if unknown:
                raise serializers.ValidationError({sorted(unknown)[0]: "Unknown parameter."})
            for name, field in self.fields.items():
                where = _not_a_string(field, data.get(name), name)
                if where is not None:
                    raise serializers.ValidationError({where: "Not a valid string."})
        return dict(super().to_internal_value(data))


def _not_a_string(field: serializers.Field[Any, Any, Any, Any], value: Any, where: str) -> str | None:
    """Where a non-string sits in `value` that `field` documents as a string (also inside lists
    and maps of strings), or None."""
    if value is None:
        return None
    if isinstance(field, serializers.CharField):
        return None if isinstance(value, str) else where
    if isinstance(field, serializers.ListField) and isinstance(value, list):
        for index, item in enumerate(value):
            found = _not_a_string(field.child, item, f"{where}.{index}")
            if found is not None:
                return found
    if isinstance(field, serializers.DictField) and isinstance(value, dict):
        for key, item in value.items():
            found = _not_a_string(field.child, item, f"{where}.{key}")
            if found is not None:
                return found
    return None


class StrictInSchema(OpenApiSerializerExtension):  # type: ignore[no-untyped-call]
    """Documents what StrictIn enforces: no property beyond the declared ones."""

    target_class = StrictIn
    match_subclasses = True

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_basic_serializer(self.target, direction)  # type: ignore[no-untyped-call]
        schema["additionalProperties"] = False
        schema.update(self.target.schema_rules)
        return schema


class AmountField(serializers.DecimalField):
    """A non-negative amount of money: a JSON number, rounded half-up to `decimal_places`, or a
    decimal string with at most that many places ("12.5"). An empty string is not an amount (DRF
    would read it as null), nor is a boolean or an exponent string."""

    def __init__(self, *, max_digits: int, decimal_places: int, **kwargs: Any) -> None:
        whole = max_digits - decimal_places
        self.places = decimal_places
        self.maximum = 10**whole - 1  # numbers are rounded, so one below the first overflowing value
        self.string_pattern = rf"^[0-9]{{1,{whole}}}(\.[0-9]{{1,{decimal_places}}})?$"
        super().__init__(
            max_digits=max_digits,
            decimal_places=decimal_places,
            min_value=Decimal(0),
            rounding=ROUND_HALF_UP,
            **kwargs,
        )

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if data is None or data is empty:
            result: tuple[bool, Any] = serializers.Field.validate_empty_values(self, data)
            return result
        return (False, data)

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool) or not isinstance(data, int | float | str):
            self.fail("invalid")
        if isinstance(data, str):
            if not re.fullmatch(self.string_pattern, data):
                self.fail("invalid")
            value = Decimal(data)
        else:
            value = Decimal(str(data))
            if not value.is_finite():
                self.fail("invalid")
            value = value.quantize(Decimal(1).scaleb(-self.places), rounding=ROUND_HALF_UP)
        checked: Decimal = self.validate_precision(value)
        return checked


class AmountFieldSchema(OpenApiSerializerFieldExtension):  # type: ignore[no-untyped-call]
    target_class = AmountField

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        field: AmountField = self.target
        return {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": field.maximum},
                {"type": "string", "pattern": field.string_pattern},
            ]
        }


def query_flag(query: Mapping[str, Any], name: str) -> bool | None:
    """A boolean query parameter: true/false (or 1/0); absent or empty is None; anything else a 400
    (a typo such as `?include_archived=ture` would otherwise read as false)."""
    raw = query.get(name)
    if raw in (None, ""):
        return None
    value = str(raw).lower()
    if value not in ("true", "false", "1", "0"):
        raise InvalidRequest(f"{name} must be true or false.", param=name)
    return value in ("true", "1")


class SchemaView(SpectacularAPIView):
    """/api/schema, generated one request at a time.

    drf-spectacular's generator keeps process-wide state (extension classes it imports lazily on
    first use, its warning counters), and two requests generating at once in the same process
    corrupt it into a 500 (tfranzel/drf-spectacular#1122, #1368): the first two concurrent
    requests after a worker started failed.
    """

    _generating = threading.Lock()

    def _get_schema_response(self, request: Any) -> Any:
        with self._generating:
            return super()._get_schema_response(request)  # type: ignore[no-untyped-call]
