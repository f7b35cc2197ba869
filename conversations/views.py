"""`/v1/conversations…`: OpenAI's Conversations API (plus jan's list, title and PATCH).

Thin views: parse, call one selector or service, render. Every route resolves the
conversation through selectors.conversation_get, so another project's or another creator's
conversation (and so its items) answers 404.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import DataAuthentication, principal_of
from conversations import items as wire
from conversations import selectors, services
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
from gateway.pagination import page_params

MAX_ITEMS_PER_REQUEST = 20

PAGE_PARAMETERS = [
    OpenApiParameter("limit", int, description="1-100, default 20"),
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


class ConversationView(APIView):
    authentication_classes = [DataAuthentication]


class ConversationCollection(ConversationView):
    @conversation_op("listConversations", responses={200: ConversationListOut}, parameters=PAGE_PARAMETERS)
    def get(self, request: Request) -> Response:
        return Response(selectors.conversation_page(principal_of(request), page_params(request.query_params)))

    @conversation_op("createConversation", request=ConversationCreateIn, responses={200: ConversationOut})
    def post(self, request: Request) -> Response:
        data = _body(request)
        conversation = services.conversation_create(
            principal=principal_of(request),
            title=data.get("title"),
            metadata=data.get("metadata"),
            items=data.get("items"),
            max_items=MAX_ITEMS_PER_REQUEST,
        )
        return Response(selectors.conversation_object(conversation))


class ConversationDetail(ConversationView):
    @conversation_op("getConversation", responses={200: ConversationOut})
    def get(self, request: Request, conversation_id: str) -> Response:
        conversation = selectors.conversation_get(principal_of(request), conversation_id)
        return Response(selectors.conversation_object(conversation))

    @conversation_op("updateConversation", request=ConversationUpdateIn, responses={200: ConversationOut})
    def post(self, request: Request, conversation_id: str) -> Response:
        data = _body(request)
        if data.get("metadata") is None and data.get("title") is None:
            raise InvalidRequest(
                "Missing required parameter: 'metadata'.", param="metadata", code="missing_required_parameter"
            )
        conversation = selectors.conversation_get(principal_of(request), conversation_id)
        conversation = services.conversation_update(
            conversation=conversation, metadata=data.get("metadata"), title=data.get("title")
        )
        return Response(selectors.conversation_object(conversation))

    @conversation_op("patchConversation", request=ConversationUpdateIn, responses={200: ConversationOut})
    def patch(self, request: Request, conversation_id: str) -> Response:
        response: Response = self.post(request, conversation_id)
        return response

    @conversation_op("deleteConversation", responses={200: ConversationDeletedOut})
    def delete(self, request: Request, conversation_id: str) -> Response:
        conversation = selectors.conversation_get(principal_of(request), conversation_id)
        services.conversation_delete(conversation=conversation)
        return Response(selectors.conversation_deleted_object(conversation.public_id))


class ItemCollection(ConversationView):
    @conversation_op(
        "listConversationItems",
        responses={200: ConversationItemListOut},
        parameters=[*PAGE_PARAMETERS, INCLUDE_PARAMETER],
    )
    def get(self, request: Request, conversation_id: str) -> Response:
        params = page_params(request.query_params)
        _include(request)
        conversation = selectors.conversation_get(principal_of(request), conversation_id)
        return Response(selectors.item_page(conversation, params))

    @conversation_op(
        "createConversationItems",
        request=ItemCreateIn,
        responses={200: ConversationItemListOut},
        parameters=[INCLUDE_PARAMETER],
    )
    def post(self, request: Request, conversation_id: str) -> Response:
        data = _body(request)
        _include(request)
        if data.get("items") is None:
            raise InvalidRequest(
                "Missing required parameter: 'items'.", param="items", code="missing_required_parameter"
            )
        conversation = selectors.conversation_get(principal_of(request), conversation_id)
        specs = wire.parse_items(data["items"], max_items=MAX_ITEMS_PER_REQUEST)
        if not specs:
            raise InvalidRequest("'items' must contain at least one item.", param="items", code="empty_array")
        rows = services.items_create(conversation=conversation, items=specs)
        return Response(selectors.item_list_object(rows))


class ItemDetail(ConversationView):
    @conversation_op(
        "getConversationItem", responses={200: ConversationItemOut}, parameters=[INCLUDE_PARAMETER]
    )
    def get(self, request: Request, conversation_id: str, item_id: str) -> Response:
        _include(request)
        conversation = selectors.conversation_get(principal_of(request), conversation_id)
        return Response(selectors.item_object(selectors.item_get(conversation, item_id)))

    @conversation_op("deleteConversationItem", responses={200: ConversationOut})
    def delete(self, request: Request, conversation_id: str, item_id: str) -> Response:
        conversation = selectors.conversation_get(principal_of(request), conversation_id)
        services.item_delete(item=selectors.item_get(conversation, item_id))
        return Response(selectors.conversation_object(conversation))
