"""The hot path's routes as Django views, for the Django test client, WSGI servers and the schema.

Under the ASGI entry point (gateway.asgi) these URLs are answered by inference.hotpath before
Django sees them; both call the same handlers, so the behaviour is one.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from inference import hotpath


@csrf_exempt
@require_POST
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    return (await hotpath.chat_completions(request.headers, request.body)).as_django()


@require_GET
async def models_list(request: HttpRequest) -> HttpResponseBase:
    return (await hotpath.models_list(request.headers)).as_django()


@require_GET
async def model_retrieve(request: HttpRequest, model: str) -> HttpResponseBase:
    return (await hotpath.model_retrieve(request.headers, model)).as_django()


@csrf_exempt
@require_POST
async def completions(request: HttpRequest) -> HttpResponseBase:
    return (await hotpath.completions(request.headers, request.body)).as_django()


@csrf_exempt
@require_POST
async def embeddings(request: HttpRequest) -> HttpResponseBase:
    return (await hotpath.embeddings(request.headers, request.body)).as_django()
