"""The search service: `python -m serving.api --model models/NAME --index index/ [--tf-serving HOST:PORT]`.

Endpoints (OpenAPI at `/openapi.json`):

    GET  /                  the web page: drop a photo (or type words) and see the nearest products
    POST /search            an image (multipart field `image`, or JSON {"image_b64": ...}); ?k= (1-100)
    POST /search/text       JSON {"text": "navy striped shirt", "k": 10} (weak-label models)
    GET  /items/{id}        a catalogue record;  GET /items/{id}/image  its photo
    POST /items             add a product: multipart (image + id, label, text, labels JSON) or JSON
    PUT  /items/{id}        change its fields and/or photo;  DELETE /items/{id}
    GET  /healthz           status, model, item count;  GET /metrics  Prometheus text format

Embeddings come from TF Serving over gRPC when `--tf-serving` is given, else from the exported
SavedModel in this process. Writes need the API key (`--api-key` or the VISNET_API_KEY
environment variable) in an `X-API-Key` header; reads are open. Every write is saved to the
index directory (atomically) before it is acknowledged, or with `--save-interval S` every S
seconds and at shutdown. Bad input gets a JSON 4xx
`{"error": ...}`: bodies over the size limit (413), files that are not images (415), images over
the pixel limit (413, read from the header before decoding), damaged images (422).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import os
import sys
import threading
import time

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from serving.metrics import Metrics
from serving.uploads import UploadError, check_image

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
MAX_K = 100
UPLOAD_FIELDS = ("image", "file")


@dataclasses.dataclass
class ApiSettings:
    """Settings of the search service.

    Args:
        model: str. The export's base path (`models/NAME`): its metadata, vocabulary and, without
            `tf_serving`, the model itself.
        index: str. The gallery directory (`python -m visnet.index build`); created empty if absent.
        tf_serving: str or None. host:port of TF Serving's gRPC API.
        backend: str. Index backend of a new, empty gallery.
        api_key: str or None. The key write requests must send (default: $VISNET_API_KEY).
        max_upload_bytes: int. Largest request body.
        max_pixels: int. Largest image (width x height).
        default_k: int. Results when the request gives no k.
        batch_size: int. Concurrent photo searches embedded together, up to this many images per model
            call (`serving.batching`); 1 turns batching off.
        batch_timeout_ms: float. Longest wait for more searches to batch with a waiting one.
        save_interval: float. 0: every write is saved before it is acknowledged. Above 0: writes
            are saved together at most this many seconds apart, and at shutdown (for large
            galleries, where a save rewrites every vector; a crash loses the unsaved writes).
    """

    model: str
    index: str
    tf_serving: str | None = None
    backend: str = "brute"
    api_key: str | None = None
    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    default_k: int = 12
    save_interval: float = 0.0
    batch_size: int = 16
    batch_timeout_ms: float = 2.0

    def __post_init__(self):
        if self.api_key is None:
            self.api_key = os.environ.get("VISNET_API_KEY") or None
        if self.max_upload_bytes < 1:
            raise ValueError(f"max_upload_bytes must be >= 1. Received: {self.max_upload_bytes}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1. Received: {self.max_pixels}")
        if not 1 <= self.default_k <= MAX_K:
            raise ValueError(f"default_k must be between 1 and {MAX_K}. Received: {self.default_k}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1. Received: {self.batch_size}")
        if self.batch_timeout_ms < 0:
            raise ValueError(f"batch_timeout_ms must be >= 0. Received: {self.batch_timeout_ms}")
        if self.save_interval < 0:
            raise ValueError(f"save_interval must be >= 0 seconds. Received: {self.save_interval}")


class ApiError(Exception):
    """An error answered as JSON `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes is a 413 (from Content-Length, or counted as it streams)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._reject(send)
        received, started = 0, False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send):
        body = json.dumps({"error": f"The request body is over the limit of {self.limit:,} bytes."}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class SearchService:
    """What the endpoints do, without HTTP: embed, search, change the gallery, save it."""

    def __init__(self, settings: ApiSettings, predictor=None, gallery=None):
        from visnet.exporting import latest_version, read_metadata
        from visnet.index import Gallery
        from visnet.index.storage import MANIFEST

        self.settings = settings
        self.metadata = read_metadata(latest_version(settings.model))
        self.model_info = {"name": self.metadata["name"], "version": str(self.metadata["version"])}
        if predictor is None:
            if settings.tf_serving:
                from serving.clients import GrpcClient

                predictor = GrpcClient(settings.tf_serving, self.metadata["name"], version=self.metadata["version"])
            else:
                from visnet.exported import ExportedModel

                predictor = ExportedModel(settings.model)
        if settings.batch_size > 1:
            from serving.batching import BatchingPredictor

            predictor = BatchingPredictor(predictor, settings.batch_size, settings.batch_timeout_ms)
        self.predictor = predictor
        if gallery is None:
            if os.path.exists(os.path.join(settings.index, MANIFEST)):
                gallery = Gallery.load(settings.index, expected_model=self.model_info)
            else:
                gallery = Gallery(settings.backend)
        self.gallery = gallery
        self.vocabulary = None
        if "text_query" in self.metadata["signatures"]:
            from visnet.data.text import Vocabulary

            version_dir = latest_version(settings.model)
            self.vocabulary = Vocabulary.load(os.path.join(version_dir, "assets.extra", "vocabulary.json"))
        self.uploads = os.path.join(settings.index, "uploads")
        self._write_lock = threading.Lock()
        self._dirty = threading.Event()
        self._closed = threading.Event()
        self._saver = None
        if settings.save_interval > 0:
            self._saver = threading.Thread(target=self._save_loop, daemon=True, name="gallery-saver")
            self._saver.start()

    # Reading -----------------------------------------------------------------------------------
    def check_k(self, k) -> int:
        try:
            k = int(k) if k is not None else self.settings.default_k
        except (TypeError, ValueError):
            raise ApiError(422, f"k must be an integer between 1 and {MAX_K}. Received: k={k!r}") from None
        if not 1 <= k <= MAX_K:
            raise ApiError(422, f"k must be between 1 and {MAX_K}. Received: k={k}")
        return k

    def embed(self, data: bytes, name: str = "the upload"):
        try:
            data = check_image(data, self.settings.max_pixels, name)
        except UploadError as error:
            raise ApiError(error.status, str(error)) from None
        vectors, valid = self.predictor.embed([data])
        if not valid[0]:
            raise ApiError(422, f"The model could not use {name} (damaged or over its pixel limit).")
        return data, vectors[0]

    def search(self, data: bytes, k) -> dict:
        k = self.check_k(k)
        begin = time.perf_counter()
        _, vector = self.embed(data)
        results = self.gallery.search(vector, k)
        return {"results": [self.present(r) for r in results], "took_ms": round(1000 * (time.perf_counter() - begin), 2)}

    def search_text(self, text, k) -> dict:
        if self.vocabulary is None:
            raise ApiError(404, f"Text search needs a weak-label model; {self.metadata['name']} is a "
                                f"{self.metadata['arch']} model.")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(422, "text must be a non-empty string.")
        if len(text) > 1000:
            raise ApiError(422, f"text must be at most 1000 characters. Received: {len(text)}")
        k = self.check_k(k)
        begin = time.perf_counter()
        ids = self.vocabulary.bag(text)
        if not len(ids):
            raise ApiError(422, f"No word of {text!r} is in the model's vocabulary "
                                f"(tokens: {self.vocabulary.tokenizer(text)}).")
        query = self.predictor.text_query([list(map(int, ids))])[0]
        words = [self.vocabulary.words[i] for i in ids]
        if len(self.gallery) == 0 or not query.any():
            return {"results": [], "words": words, "took_ms": 0.0}
        # q.z is the summed word score: searching with q/|q| ranks by it; scores are put back on its scale.
        norm = float((query**2).sum() ** 0.5)
        results = self.gallery.search(query / norm, k)
        for result in results:
            result["score"] = result["score"] * norm
        return {"results": [self.present(r) for r in results], "words": words,
                "took_ms": round(1000 * (time.perf_counter() - begin), 2)}

    def item(self, id: str) -> dict:
        record = self.gallery.get(id)
        if record is None:
            raise ApiError(404, f"No item with id {id!r}.")
        return self.present(record)

    def image_path(self, id: str) -> str:
        record = self.gallery.get(id)
        if record is None:
            raise ApiError(404, f"No item with id {id!r}.")
        path = record.get("image")
        if not path or not os.path.isfile(path):
            raise ApiError(404, f"Item {id!r} has no image file on this server.")
        return path

    @staticmethod
    def present(record: dict) -> dict:
        return {**record, "image_url": f"/items/{record['id']}/image"}  # the catalogue decodes labels

    # Writing -----------------------------------------------------------------------------------
    def check_key(self, key: str | None) -> None:
        expected = self.settings.api_key
        if not expected:
            raise ApiError(403, "Writes are disabled: start the service with --api-key or VISNET_API_KEY set.")
        if not key:
            raise ApiError(401, "This request changes the catalogue: send the API key in an X-API-Key header.")
        if not hmac.compare_digest(key.encode(), expected.encode()):
            raise ApiError(403, "The API key is wrong.")

    def _store_upload(self, data: bytes) -> str:
        """Writes a checked upload under the index's `uploads/`, named by its content; returns the path."""
        import io

        from PIL import Image

        os.makedirs(self.uploads, exist_ok=True)
        extension = Image.open(io.BytesIO(data)).format.lower()
        path = os.path.join(self.uploads, f"{hashlib.sha256(data).hexdigest()[:32]}.{extension}")
        if not os.path.exists(path):
            temporary = path + f".{os.getpid()}.{threading.get_ident()}.tmp"
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        return path

    def _fields(self, fields: dict) -> dict:
        allowed = {"label", "text", "labels"}
        unknown = sorted(set(fields) - allowed - {"id"})
        if unknown:
            raise ApiError(422, f"Unknown field(s) {unknown}; an item has id, label, text, labels and an image.")
        out = {key: fields[key] for key in allowed if key in fields}
        if isinstance(out.get("labels"), str):
            try:
                out["labels"] = json.loads(out["labels"]) if out["labels"].strip() else {}
            except ValueError:
                raise ApiError(422, "labels must be a JSON object, e.g. {\"colour\": \"navy\"}.") from None
        return out

    def _save(self) -> None:
        """Called after each write: saves now, or marks the gallery for the next periodic save."""
        if self._saver is None:
            self.gallery.save(self.settings.index, model=self.model_info)
        else:
            self._dirty.set()

    def _save_loop(self) -> None:
        while not self._closed.wait(self.settings.save_interval):
            self.flush()

    def flush(self) -> None:
        """Saves pending writes (a no-op when nothing changed since the last save)."""
        if self._dirty.is_set():
            self._dirty.clear()
            self.gallery.save(self.settings.index, model=self.model_info)

    def close(self) -> None:
        """Stops the periodic saver and the batcher, and saves what is pending."""
        self._closed.set()
        self.flush()
        if hasattr(self.predictor, "close"):
            self.predictor.close()

    def add(self, fields: dict, data: bytes | None) -> dict:
        id = fields.get("id")
        if not isinstance(id, str) or not id.strip() or len(id) > 200:
            raise ApiError(422, "id must be a non-empty string of at most 200 characters.")
        if data is None:
            raise ApiError(422, "A new item needs an image (multipart field 'image' or JSON 'image_b64').")
        values = self._fields(fields)
        data, vector = self.embed(data)
        with self._write_lock:
            if id in self.gallery:
                raise ApiError(409, f"An item with id {id!r} exists; PUT /items/{id} changes it.")
            item = {"id": id, "image": self._store_upload(data), **values}
            try:
                self.gallery.add(item, vector)
            except (ValueError, TypeError) as error:
                raise ApiError(422, str(error)) from None
            self._save()
        return self.item(id)

    def update(self, id: str, fields: dict, data: bytes | None) -> dict:
        if fields.get("id", id) != id:
            raise ApiError(422, f"The id in the body ({fields['id']!r}) differs from the URL's ({id!r}).")
        values = self._fields(fields)
        vector = None
        if data is not None:
            data, vector = self.embed(data)
            values["image"] = None  # set below, once stored
        with self._write_lock:
            if id not in self.gallery:
                raise ApiError(404, f"No item with id {id!r}.")
            if data is not None:
                values["image"] = self._store_upload(data)
            if not values and vector is None:
                raise ApiError(422, "Nothing to change: send an image and/or label, text, labels.")
            try:
                self.gallery.update(id, vector, **values)
            except (ValueError, TypeError) as error:
                raise ApiError(422, str(error)) from None
            self._save()
        return self.item(id)

    def remove(self, id: str) -> dict:
        with self._write_lock:
            if id not in self.gallery:
                raise ApiError(404, f"No item with id {id!r}.")
            self.gallery.remove(id)
            self._save()
        return {"deleted": id}

    def health(self) -> dict:
        return {"status": "ok", "model": self.model_info, "arch": self.metadata["arch"], "items": len(self.gallery),
                "text_search": self.vocabulary is not None, "max_k": MAX_K, "default_k": self.settings.default_k,
                "embeddings": "tf-serving " + self.settings.tf_serving if self.settings.tf_serving else "in-process",
                "unsaved_writes": self._dirty.is_set()}


# HTTP -------------------------------------------------------------------------------------------
def _decode_b64(value, name: str) -> bytes:
    if not isinstance(value, str):
        raise ApiError(422, f"{name} must be a base64 string.")
    try:
        return base64.b64decode(value.split(",", 1)[-1] if value.startswith("data:") else value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{name} is not valid base64.") from None


async def read_request(request) -> tuple[dict, bytes | None]:
    """(fields, image bytes or None) from a multipart form or a JSON body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=2, max_fields=20)
        except Exception as error:  # starlette raises several kinds for malformed forms
            if isinstance(error, _BodyTooLarge):
                raise
            raise ApiError(400, f"Malformed multipart form: {error}") from None
        fields, data = {}, None
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                if key not in UPLOAD_FIELDS:
                    raise ApiError(422, f"Upload the image in the field 'image'. Received a file in {key!r}.")
                data = await value.read()
            else:
                fields[key] = value
        return fields, data
    if content_type.startswith("application/json"):
        try:
            body = json.loads(await request.body() or b"null")
        except (ValueError, UnicodeDecodeError) as error:
            raise ApiError(400, f"The body is not valid JSON: {error}") from None
        if not isinstance(body, dict):
            raise ApiError(422, "The JSON body must be an object.")
        data = _decode_b64(body.pop("image_b64"), "image_b64") if "image_b64" in body else None
        return body, data
    raise ApiError(415, f"Send multipart/form-data or application/json. Received: {content_type or 'no content type'}")


def create_app(settings: ApiSettings, predictor=None, gallery=None):
    """The FastAPI application (`predictor` and `gallery` default to what `settings` names)."""
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
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        begin = time.perf_counter()
        try:
            response = await call_next(request)
        except _BodyTooLarge:
            raise
        except Exception as error:  # a bug, never bad input: answered as JSON, counted, logged
            print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
            response = JSONResponse({"error": "Internal error; the server logged it."}, status_code=500)
        route = request.scope.get("route")
        metrics.observe(request.method, getattr(route, "path", "unmatched"), response.status_code,
                        time.perf_counter() - begin)
        return response

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
        if data is None:
            raise ApiError(422, "Send the photo as multipart field 'image' or JSON 'image_b64'.")
        k = k if k is not None else fields.get("k")
        return await run_in_threadpool(service.search, data, k)

    @app.post("/search/text", summary="Products matching words (weak-label models)")
    async def search_text(request: Request, k: int | None = Query(None, description=f"results, 1-{MAX_K}")):
        fields, _ = await read_request(request)
        return await run_in_threadpool(service.search_text, fields.get("text"), k if k is not None else fields.get("k"))

    @app.get("/items/{id}", summary="A catalogue record")
    def get_item(id: str):
        return service.item(id)

    @app.get("/items/{id}/image", summary="A product's photo")
    def get_image(id: str):
        return FileResponse(service.image_path(id))

    @app.post("/items", status_code=201, openapi_extra=form_or_json, summary="Add a product (API key)")
    async def add_item(request: Request, x_api_key: str | None = Header(None)):
        service.check_key(x_api_key)
        fields, data = await read_request(request)
        return await run_in_threadpool(service.add, fields, data)

    @app.put("/items/{id}", openapi_extra=form_or_json, summary="Change a product (API key)")
    async def put_item(id: str, request: Request, x_api_key: str | None = Header(None)):
        service.check_key(x_api_key)
        fields, data = await read_request(request)
        return await run_in_threadpool(service.update, id, fields, data)

    @app.delete("/items/{id}", summary="Delete a product (API key)")
    def delete_item(id: str, x_api_key: str | None = Header(None)):
        service.check_key(x_api_key)
        return service.remove(id)

    @app.get("/healthz", summary="Liveness and what is loaded")
    def healthz():
        return service.health()

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    def get_metrics():
        gauges = {"index_items": ("Products in the gallery.", len(service.gallery), None),
                  "model_info": ("The model embeddings come from.", 1, service.model_info)}
        return PlainTextResponse(metrics.render(gauges), media_type="text/plain; version=0.0.4")

    return BodyLimit(app, settings.max_upload_bytes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving.api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the export's base path, models/NAME (visnet.export)")
    parser.add_argument("--index", required=True, help="the gallery directory (python -m visnet.index build)")
    parser.add_argument("--tf-serving", metavar="HOST:PORT",
                        help="embed through TF Serving's gRPC API (default: the SavedModel in this process)")
    parser.add_argument("--backend", default="brute", help="index backend of a new, empty gallery (default brute)")
    parser.add_argument("--api-key", help="key for write requests (default: $VISNET_API_KEY; none: writes disabled)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="largest request body in MB (default 10)")
    parser.add_argument("--max-pixels", type=int, default=40_000_000,
                        help="largest image, width x height (default 40,000,000)")
    parser.add_argument("--default-k", type=int, default=12, help=f"results when a request gives no k (default 12, "
                                                                  f"at most {MAX_K})")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="concurrent photo searches embedded in one model call, up to this many images "
                             "(default 16; 1: no batching)")
    parser.add_argument("--batch-timeout-ms", type=float, default=2.0,
                        help="longest wait for more searches to batch with a waiting one (default 2)")
    parser.add_argument("--check", action="store_true",
                        help="start, answer the page, /healthz and one photo search (a gallery item's own photo) over "
                             "HTTP, print the result, stop: a smoke test of a deployment")
    parser.add_argument("--save-interval", type=float, default=0.0, metavar="SECONDS",
                        help="0 (default): save every write before answering; above 0: save pending writes "
                             "this often and at shutdown (large galleries)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from visnet.cli import report_error

    try:
        settings = ApiSettings(model=args.model, index=args.index, tf_serving=args.tf_serving, backend=args.backend,
                               api_key=args.api_key, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                               max_pixels=args.max_pixels, default_k=args.default_k,
                               save_interval=args.save_interval, batch_size=args.batch_size,
                               batch_timeout_ms=args.batch_timeout_ms)
        app = create_app(settings)
    except (ValueError, TypeError, OSError, KeyError, RuntimeError) as error:
        return report_error(error)
    import uvicorn

    service = app.app.state.service
    print(f"visnet search: {len(service.gallery)} items, model {service.model_info['name']} "
          f"version {service.model_info['version']}; open http://{args.host}:{args.port}/", flush=True)
    if args.check:
        return check(app, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def check(app, host: str, port: int) -> int:
    """Serves `app` in a thread, asks for the page, /healthz and one photo search over HTTP, stops."""
    import urllib.request

    import uvicorn

    service = app.app.state.service
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://{host}:{port}"
    try:
        for _ in range(600):
            if server.started or not thread.is_alive():
                break
            time.sleep(0.05)
        if not server.started:
            print(f"error: the service did not start on {host}:{port}", file=sys.stderr)
            return 1
        with urllib.request.urlopen(base + "/", timeout=30) as response:
            page = response.read()
        with urllib.request.urlopen(base + "/healthz", timeout=30) as response:
            health = json.loads(response.read())
        photo = next((record["image"] for record in map(service.gallery.get, service.gallery.ids()[:50])
                      if record.get("image") and os.path.isfile(record["image"])), None)
        if photo is None:
            print(f"page {len(page)} bytes, healthz {health}; no gallery photo to search with")
            return 0
        with open(photo, "rb") as handle:
            body = json.dumps({"image_b64": base64.b64encode(handle.read()).decode(), "k": 5}).encode()
        request = urllib.request.Request(base + "/search", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            found = json.loads(response.read())
        print(f"check passed: page {len(page)} bytes, {health['items']} items, search by {photo} -> "
              + ", ".join(f"{r['id']} ({r['score']:.3f})" for r in found["results"]) + f" in {found['took_ms']} ms")
        return 0
    except (OSError, ValueError, KeyError) as error:
        print(f"error: the check failed: {error}", file=sys.stderr)
        return 1
    finally:
        server.should_exit = True
        thread.join(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
