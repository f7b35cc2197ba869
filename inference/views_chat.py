"""The hot path's routes as Django views, for the Django test client, WSGI servers and the schema.

Under the ASGI entry point (gateway.asgi) these URLs are answered by inference.hotpath before
Django sees them; both call the same handlers, so the behaviour is one.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from inference import hotpath


def django_response(reply: hotpath.Reply) -> HttpResponseBase:
    response: HttpResponseBase
    if reply.stream is not None:
        response = StreamingHttpResponse(reply.stream, status=reply.status, content_type="text/event-stream")
    else:
        response = HttpResponse(reply.body, status=reply.status, content_type="application/json")
    for name, value in reply.headers.items():
        response[name] = value
    return response


@csrf_exempt
@require_POST
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    return django_response(await hotpath.chat_completions(request.headers, request.body))


@require_GET
async def models_list(request: HttpRequest) -> HttpResponseBase:
    return django_response(await hotpath.models_list(request.headers))


@require_GET
async def model_retrieve(request: HttpRequest, model: str) -> HttpResponseBase:
    return django_response(await hotpath.model_retrieve(request.headers, model))


@csrf_exempt
@require_POST
async def completions(request: HttpRequest) -> HttpResponseBase:
    return django_response(await hotpath.completions(request.headers, request.body))


@csrf_exempt
@require_POST
async def embeddings(request: HttpRequest) -> HttpResponseBase:
    return django_response(await hotpath.embeddings(request.headers, request.body))
