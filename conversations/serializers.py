"""Named request/response shapes for the schema. Validation itself is conversations.items'
(called by the services), so the API and other apps' callers share one set of rules."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class ConversationCreateIn(serializers.Serializer[Any]):
    items = serializers.ListField(
        child=serializers.DictField(), required=False, allow_null=True, max_length=20
    )
    metadata = serializers.DictField(child=serializers.CharField(), required=False, allow_null=True)
    title = serializers.CharField(required=False, allow_blank=True, max_length=256)


class ConversationUpdateIn(serializers.Serializer[Any]):
    metadata = serializers.DictField(child=serializers.CharField(), required=False)
    title = serializers.CharField(required=False, allow_blank=True, max_length=256)


class ItemCreateIn(serializers.Serializer[Any]):
    items = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=20)


class ConversationOut(serializers.Serializer[Any]):
    id = serializers.CharField()
    object = serializers.CharField(default="conversation")
    created_at = serializers.IntegerField()
    metadata = serializers.DictField(child=serializers.CharField())
    title = serializers.CharField(allow_null=True)


def _list_out(name: str, item: type[serializers.Serializer[Any]]) -> type[serializers.Serializer[Any]]:
    """The list envelope around `item`, for the schema (`data` can't be a class attribute:
    it would shadow Serializer.data)."""
    fields: dict[str, Any] = {
        "object": serializers.CharField(default="list"),
        "data": item(many=True),
        "first_id": serializers.CharField(allow_null=True),
        "last_id": serializers.CharField(allow_null=True),
        "has_more": serializers.BooleanField(),
    }
    return type(name, (serializers.Serializer,), fields)


ConversationListOut = _list_out("ConversationListOut", ConversationOut)


class ConversationDeletedOut(serializers.Serializer[Any]):
    id = serializers.CharField()
    object = serializers.CharField(default="conversation.deleted")
    deleted = serializers.BooleanField()


class ConversationItemOut(serializers.Serializer[Any]):
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


ConversationItemListOut = _list_out("ConversationItemListOut", ConversationItemOut)
