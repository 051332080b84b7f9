"""The search API's HTTP side: routes, error answers, metrics (`create_app`); the work is `SearchService`'s.

Every answer that is not a 2xx is JSON `{"error": ...}`. Requests pass through two ASGI layers,
outermost first: `Observe` (latency and status per route for /metrics; a bug is a logged 500,
a client that left is a 499, never a traceback per request) and `serving.requests.BodyLimit`.
"""

from __future__ import annotations

import os
import sys
import time

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from serving.metrics import Metrics
from serving.requests import (
    CLIENT_CLOSED,
    MAX_K,
    ApiError,
    BodyLimit,
    only_fields,
    read_request,
)
from serving.service import SearchService
from serving.settings import ApiSettings

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


class Observe:
    """ASGI middleware: counts each request by route and status, times it, and turns what escapes
    the app into an answer: a client that went away is counted as 499, a bug is a logged JSON 500."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        begin, status = time.perf_counter(), None

        async def tracking_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            try:
                await send(message)
            except OSError:  # the client is gone; nothing to tell it
                status = CLIENT_CLOSED

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:  # noqa: BLE001 - a bug, never bad input
            print(f"error: {scope.get('method')} {scope.get('path')}: {type(error).__name__}: {error}",
                  file=sys.stderr)
            if status is None:
                await _send_json(tracking_send, 500, "Internal error; the server logged it.")
        route = scope.get("route")
        self.metrics.observe(scope.get("method", ""), getattr(route, "path", "unmatched"),
                             status or CLIENT_CLOSED, time.perf_counter() - begin)


async def _send_json(send, status: int, message: str) -> None:
    import json

    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(settings: ApiSettings, predictor=None, gallery=None):
    """The ASGI application (`predictor` and `gallery` default to what `settings` names).

    The result is the FastAPI app under `Observe` and `BodyLimit`; `.fastapi` is the app itself and
    `.service` the `SearchService`.
    """
    import contextlib

    service = SearchService(settings, predictor, gallery)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        service.close()  # pending writes are saved at shutdown

    app = FastAPI(title="visnet search", version=service.model_info["version"], lifespan=lifespan,
                  description="Search a product catalogue by photo and by words.")
    app.state.service = service

    @app.exception_handler(ApiError)
    async def api_error(request, error: ApiError):
        return JSONResponse({"error": str(error)}, status_code=error.status, headers=error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)

    form_or_json = {"requestBody": {"content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "image": {"type": "string", "format": "binary"}, "id": {"type": "string"}, "label": {"type": "string"},
            "text": {"type": "string"}, "labels": {"type": "string", "description": "a JSON object"}}}},
        "application/json": {"schema": {"type": "object", "properties": {
            "image_b64": {"type": "string"}, "id": {"type": "string"}, "label": {"type": "string"},
            "text": {"type": "string"}, "labels": {"type": "object"}, "k": {"type": "integer"}}}}}}}

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(os.path.join(STATIC, "index.html"), media_type="text/html")

    @app.post("/search", openapi_extra=form_or_json, summary="Products nearest a photo")
    async def search(request: Request, k: int | None = Query(None, description=f"results, 1-{MAX_K}")):
        fields, data = await read_request(request)
        only_fields(fields, ("k",), "/search (besides the photo)")
        if data is None:
            raise ApiError(422, "Send the photo as multipart field 'image' or JSON 'image_b64'.")
        return JSONResponse(await service.search_async(data, k if k is not None else fields.get("k")))

    @app.post("/search/text", summary="Products matching words (weak-label models)")
    async def search_text(request: Request, k: int | None = Query(None, description=f"results, 1-{MAX_K}")):
        fields, data = await read_request(request)
        only_fields(fields, ("text", "k"), "/search/text")
        if data is not None:
            raise ApiError(422, "/search/text takes words; send photos to /search.")
        return await run_in_threadpool(service.search_text, fields.get("text"), k if k is not None else fields.get("k"))

    # `{id:path}`: ids may hold '/' (folder datasets name items label/file); none ends in '/image'.
    @app.get("/items/{id:path}/image", summary="A product's photo")
    def get_image(id: str):
        return FileResponse(service.image_path(id))

    @app.get("/items/{id:path}", summary="A catalogue record")
    def get_item(id: str):
        return service.item(id)

    @app.post("/items", status_code=201, openapi_extra=form_or_json, summary="Add a product (API key)")
    async def add_item(request: Request, x_api_key: str | None = Header(None)):
        service.check_key(x_api_key)
        fields, data = await read_request(request)
        return await run_in_threadpool(service.add, fields, data)

    @app.put("/items/{id:path}", openapi_extra=form_or_json, summary="Change a product (API key)")
    async def put_item(id: str, request: Request, x_api_key: str | None = Header(None)):
        service.check_key(x_api_key)
        fields, data = await read_request(request)
        return await run_in_threadpool(service.update, id, fields, data)

    @app.delete("/items/{id:path}", summary="Delete a product (API key)")
    def delete_item(id: str, x_api_key: str | None = Header(None)):
        service.check_key(x_api_key)
        return service.remove(id)

    @app.get("/healthz", summary="Liveness and what is loaded")
    def healthz():
        return service.health()

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    def get_metrics():
        lane = service.large_images
        gauges = {"index_items": ("Products in the gallery.", len(service.gallery), None),
                  "model_info": ("The model embeddings come from.", 1, service.model_info),
                  "large_images_decoded": ("Large images decoded in the large-image lane.", lane.ran, None),
                  "large_images_refused": ("Large images answered 503: the lane's CPU budget was spent.",
                                           lane.refused, None),
                  "large_images_cpu_seconds": ("CPU seconds the large-image lane spent.",
                                               round(lane.cpu_seconds, 3), None)}
        return PlainTextResponse(metrics.render(gauges), media_type="text/plain; version=0.0.4")

    wrapped = Observe(BodyLimit(app, settings.max_upload_bytes), metrics)
    wrapped.fastapi, wrapped.service = app, service
    return wrapped
