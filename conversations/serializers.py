"""Request and response shapes of the Conversations API.

The output serializers render the stored rows; every answer goes through them, and other apps
render conversations through selectors.conversation_object, which uses them too. Input
validation is conversations.items' (called by the services), so the API and other apps' callers
share one set of rules; the input serializers name those shapes for the schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from conversations import items as wire
from conversations.models import Conversation, Item

# --- Fields ------------------------------------------------------------------------------------


class FixedCharField(serializers.CharField):
    """Always its default (an object's `object` marker), whatever the row holds; documented as
    a string with that default."""

    def get_attribute(self, instance: Any) -> Any:
        return self.default


class FixedBooleanField(serializers.BooleanField):
    """Always `value` (documented as a plain required boolean)."""

    def __init__(self, value: bool, **kwargs: Any) -> None:
        self.value = value
        super().__init__(**kwargs)

    def get_attribute(self, instance: Any) -> bool:
        return self.value


class EdgeIdField(serializers.CharField):
    """The public id of the first (or last) of a list of rows; null for none."""

    def __init__(self, *, last: bool, **kwargs: Any) -> None:
        self.last = last
        super().__init__(allow_null=True, **kwargs)

    def get_attribute(self, instance: Any) -> Any:
        rows: list[Item] = instance
        return (rows[-1] if self.last else rows[0]).public_id if rows else None


class UnixSecondsField(serializers.IntegerField):
    def to_representation(self, value: datetime) -> int:  # type: ignore[override]  # reads a datetime
        return int(value.timestamp())


class BlankAsNullCharField(serializers.CharField):
    """The model stores "no title" as ""; the API answers null."""

    def to_representation(self, value: Any) -> str | None:  # type: ignore[override]  # may answer null
        return str(value) if value else None


# --- Inputs ------------------------------------------------------------------------------------


class ConversationCreateIn(serializers.Serializer[Any]):
    items = serializers.ListField(
        child=serializers.DictField(), required=False, allow_null=True, max_length=20
    )
    metadata = serializers.DictField(child=serializers.CharField(), required=False, allow_null=True)
    title = serializers.CharField(required=False, allow_blank=True, max_length=256)


class ConversationUpdateIn(serializers.Serializer[Any]):
    metadata = serializers.DictField(child=serializers.CharField(), required=False)
    # null leaves the title as it is, as an absent title does.
    title = serializers.CharField(required=False, allow_blank=True, allow_null=True, max_length=256)


class ItemCreateIn(serializers.Serializer[Any]):
    items = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=20)


# --- Outputs -----------------------------------------------------------------------------------


class ConversationOut(serializers.Serializer[Conversation]):
    # OpenAI's Conversation, plus jan's `title`.
    id = serializers.CharField(source="public_id")
    object = FixedCharField(default="conversation")
    created_at = UnixSecondsField()
    metadata = serializers.DictField(child=serializers.CharField())
    title = BlankAsNullCharField(allow_null=True)


def _list_out(name: str, item: type[serializers.Serializer[Any]]) -> type[serializers.Serializer[Any]]:
    """The list envelope of gateway/pagination.py around `item`, for the schema; one object,
    not the array of them a list action's answer is otherwise documented as."""
    fields: dict[str, Any] = {
        "object": serializers.CharField(default="list"),
        "data": item(many=True),
        "first_id": serializers.CharField(allow_null=True),
        "last_id": serializers.CharField(allow_null=True),
        "has_more": serializers.BooleanField(),
    }
    return extend_schema_serializer(many=False)(type(name, (serializers.Serializer,), fields))


ConversationListOut = _list_out("ConversationListOut", ConversationOut)


class ConversationDeletedOut(serializers.Serializer[Conversation]):
    id = serializers.CharField(source="public_id")
    object = FixedCharField(default="conversation.deleted")
    deleted = FixedBooleanField(True)  # the answer of the route that deleted it


class ConversationItemOut(serializers.Serializer[Item]):
    """One of OpenAI's ConversationItem shapes: message, function_call, function_call_output,
    reasoning (the fields beyond type/id/status depend on the type)."""

    # Plain strings: a generic `status` enum would collide with other apps' in the schema.
    type = serializers.CharField(help_text="message | function_call | function_call_output | reasoning")
    id = serializers.CharField()
    status = serializers.CharField(help_text="in_progress | completed | incomplete")
    role = serializers.CharField(required=False)
    content = serializers.ListField(child=serializers.DictField(), required=False)
    call_id = serializers.CharField(required=False)
    name = serializers.CharField(required=False)
    arguments = serializers.CharField(required=False)
    output = serializers.JSONField(required=False)
    summary = serializers.ListField(child=serializers.DictField(), required=False)

    def to_representation(self, instance: Item) -> dict[str, Any]:
        # Which fields an item has depends on its type: the wire module, which also reads these
        # shapes back (the Responses API's inputs), renders them.
        return wire.render(
            public_id=instance.public_id,
            type=instance.type,
            role=instance.role,
            status=instance.status,
            content=instance.content,
            data=instance.data,
        )


@extend_schema_serializer(many=False)
class ConversationItemListOut(serializers.Serializer[list[Item]]):
    # OpenAI's ConversationItemList of the items given (e.g. the ones just created), all on one
    # page; listing a conversation's items pages through gateway.pagination instead.
    object = FixedCharField(default="list")
    # The metaclass takes declared fields off the class, so this does not shadow Serializer.data
    # at run time; mypy only sees the class body.
    data = ConversationItemOut(many=True, source="*")  # type: ignore[assignment]
    first_id = EdgeIdField(last=False)
    last_id = EdgeIdField(last=True)
    has_more = FixedBooleanField(False)
