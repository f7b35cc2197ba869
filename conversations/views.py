"""`/v1/conversations…`: OpenAI's Conversations API (plus jan's list, title and PATCH), as two
DRF viewsets (conversations, and a conversation's items) on a router in conversations/urls.py.

Thin actions: parse, call one selector or service, render with the output serializers. Every
route resolves the conversation through selectors.conversation_get, so another project's or
another creator's conversation (and so its items) answers 404.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.core.exceptions import RequestDataTooBig
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import ViewSet

from accounts.auth import Principal
from accounts.authentication import DataAuthentication, principal_of
from conversations import items as wire
from conversations import selectors, services
from conversations.models import Conversation, Item
from conversations.serializers import (
    ConversationCreateIn,
    ConversationDeletedOut,
    ConversationItemListOut,
    ConversationItemOut,
    ConversationListOut,
    ConversationOut,
    ConversationUpdateIn,
    ItemCreateIn,
)
from gateway.api import ERROR_RESPONSES
from gateway.errors import InvalidRequest
from gateway.pagination import page_params, paginate

MAX_ITEMS_PER_REQUEST = 20

PAGE_PARAMETERS = [
    OpenApiParameter(
        "limit", {"type": "integer", "minimum": 1, "maximum": 100}, description="1-100, default 20"
    ),
    OpenApiParameter("order", str, enum=["asc", "desc"], description="default desc"),
    OpenApiParameter("after", str, description="cursor: the last id of the previous page (jan's `last` too)"),
]
INCLUDE_PARAMETER = OpenApiParameter(
    "include[]", str, many=True, enum=list(wire.INCLUDE_VALUES), description="accepted for compatibility"
)


def conversation_op(operation_id: str, **kwargs: Any) -> Any:
    """@extend_schema for these views. The operations OpenAI defines are documented from its
    spec by conversations.schema, which replaces what is generated from these."""
    responses = {**kwargs.pop("responses", {}), **ERROR_RESPONSES}
    return extend_schema(operation_id=operation_id, tags=["Conversations"], responses=responses, **kwargs)


def _body(request: Request) -> dict[str, Any]:
    try:
        data = request.data
    except RequestDataTooBig:
        # Django's DATA_UPLOAD_MAX_MEMORY_SIZE; otherwise it becomes a bare "Bad request.".
        err = InvalidRequest("The request body is too large.", code="request_too_large")
        err.status = 413
        raise err from None
    except RecursionError:
        # DRF's JSONParser turns only ValueError into a 400; a body nested deeper than the
        # parser's recursion limit raises this instead, and is just as malformed for us.
        raise InvalidRequest(
            "The request body is nested too deeply to be parsed.", code="invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return data


def _include(request: Request) -> list[str]:
    return wire.parse_include(
        request.query_params.getlist("include[]") + request.query_params.getlist("include")
    )


class _ConversationsViewSet(ViewSet):
    # Tenancy is the caller's: its project and identity (a user, or a service account), taken
    # from the credential once per request. Conversations are looked up through
    # selectors.conversation_get, at the point each action needs one, so malformed input is
    # still reported before an unknown id.
    authentication_classes = [DataAuthentication]
    lookup_value_converter = "str"
    principal: Principal

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if request.method is not None and request.method.lower() in self.action_map:
            self.principal = principal_of(request)

    @cached_property
    def conversation(self) -> Conversation:
        return selectors.conversation_get(self.principal, self.kwargs["conversation_id"])


class ConversationViewSet(_ConversationsViewSet):
    lookup_url_kwarg = "conversation_id"

    @conversation_op("listConversations", responses={200: ConversationListOut}, parameters=PAGE_PARAMETERS)
    def list(self, request: Request) -> Response:
        page = paginate(
            selectors.conversation_queryset(self.principal), page_params(request.query_params), _conversation
        )
        return Response(page)

    @conversation_op("createConversation", request=ConversationCreateIn, responses={200: ConversationOut})
    def create(self, request: Request) -> Response:
        data = _body(request)
        conversation = services.conversation_create(
            principal=self.principal,
            title=data.get("title"),
            metadata=data.get("metadata"),
            items=data.get("items"),
            max_items=MAX_ITEMS_PER_REQUEST,
        )
        return Response(ConversationOut(conversation).data)

    @conversation_op("getConversation", responses={200: ConversationOut})
    def retrieve(self, request: Request, conversation_id: str) -> Response:
        return Response(ConversationOut(self.conversation).data)

    @conversation_op("updateConversation", request=ConversationUpdateIn, responses={200: ConversationOut})
    def modify(self, request: Request, conversation_id: str) -> Response:
        data = _body(request)
        if data.get("metadata") is None and data.get("title") is None:
            raise InvalidRequest(
                "Missing required parameter: 'metadata'.", param="metadata", code="missing_required_parameter"
            )
        conversation = services.conversation_update(
            conversation=self.conversation, metadata=data.get("metadata"), title=data.get("title")
        )
        return Response(ConversationOut(conversation).data)

    @conversation_op("patchConversation", request=ConversationUpdateIn, responses={200: ConversationOut})
    def partial_update(self, request: Request, conversation_id: str) -> Response:
        response: Response = self.modify(request, conversation_id)
        return response

    @conversation_op("deleteConversation", responses={200: ConversationDeletedOut})
    def destroy(self, request: Request, conversation_id: str) -> Response:
        conversation = services.conversation_delete(conversation=self.conversation)
        return Response(ConversationDeletedOut(conversation).data)


class ConversationItemViewSet(_ConversationsViewSet):
    lookup_url_kwarg = "item_id"

    @conversation_op(
        "listConversationItems",
        responses={200: ConversationItemListOut},
        parameters=[*PAGE_PARAMETERS, INCLUDE_PARAMETER],
    )
    def list(self, request: Request, conversation_id: str) -> Response:
        params = page_params(request.query_params)
        _include(request)
        return Response(paginate(selectors.item_queryset(self.conversation), params, _item))

    @conversation_op(
        "createConversationItems",
        request=ItemCreateIn,
        responses={200: ConversationItemListOut},
        parameters=[INCLUDE_PARAMETER],
    )
    def create(self, request: Request, conversation_id: str) -> Response:
        data = _body(request)
        _include(request)
        if data.get("items") is None:
            raise InvalidRequest(
                "Missing required parameter: 'items'.", param="items", code="missing_required_parameter"
            )
        conversation = self.conversation
        specs = wire.parse_items(data["items"], max_items=MAX_ITEMS_PER_REQUEST)
        if not specs:
            raise InvalidRequest("'items' must contain at least one item.", param="items", code="empty_array")
        rows = services.items_create(conversation=conversation, items=specs)
        return Response(ConversationItemListOut(rows).data)

    @conversation_op(
        "getConversationItem", responses={200: ConversationItemOut}, parameters=[INCLUDE_PARAMETER]
    )
    def retrieve(self, request: Request, conversation_id: str, item_id: str) -> Response:
        _include(request)
        return Response(ConversationItemOut(selectors.item_get(self.conversation, item_id)).data)

    @conversation_op("deleteConversationItem", responses={200: ConversationOut})
    def destroy(self, request: Request, conversation_id: str, item_id: str) -> Response:
        services.item_delete(item=selectors.item_get(self.conversation, item_id))
        return Response(ConversationOut(self.conversation).data)


def _conversation(row: Conversation) -> dict[str, Any]:
    return dict(ConversationOut(row).data)


def _item(row: Item) -> dict[str, Any]:
    return dict(ConversationItemOut(row).data)
