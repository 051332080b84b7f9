"""What a request to the search API may contain, checked before any work is done on it.

Everything here answers bad input with an `ApiError` (the HTTP status and a message naming the
bad value); nothing here touches the model or the gallery.

Limits (the README's serving section states the same):

- body: `--max-upload-mb` (10 MB), from Content-Length before it is read, or counted as a
  chunked body streams in: 413 either way (`BodyLimit`);
- JSON: a body is one object; its values are scalars, except `labels` (an object of scalars):
  anything deeper is a 422, a body nested past what the parser allows is a 400;
- fields: each route takes the fields it names, an unknown one is a 422;
- `k`: an integer 1-100 (a JSON number without a fraction, or digits in a form or query);
  `true`, `3.7`, `1e999` and `Infinity` are 422;
- ids: `ID_RULES` below; `text` at most `MAX_TEXT` characters, `label` `MAX_LABEL`, `labels`
  at most `MAX_LABELS` keys;
- a client that goes away mid-request is counted as status 499 (client closed request), not as
  a server error.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import unicodedata

MAX_K = 100
MAX_ID = 200
MAX_TEXT = 5000
MAX_LABEL = 200
MAX_LABELS = 64
MAX_QUERY_TEXT = 1000
UPLOAD_FIELDS = ("image", "file")
ITEM_FIELDS = ("id", "label", "text", "labels")
ID_RULES = (f"an id is 1-{MAX_ID} printable characters without leading or trailing spaces; '/' "
            "separates non-empty parts that are not '.' or '..', and the id does not end in '/image' "
            "(that URL is its photo)")
CLIENT_CLOSED = 499


class ApiError(Exception):
    """An error answered as JSON `{"error": message}` with `status` (and `headers`)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class BodyTooLarge(ApiError):
    def __init__(self, limit: int):
        super().__init__(413, f"The request body is over the limit of {limit:,} bytes.")


class ClientGone(ApiError):
    def __init__(self):
        super().__init__(CLIENT_CLOSED, "The client closed the connection before its request was read.")


def _json_response(status: int, message: str) -> tuple[dict, dict]:
    body = json.dumps({"error": message}).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         (b"connection", b"close")]}
    return start, {"type": "http.response.body", "body": body}


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes is a 413, from Content-Length before it is read or
    counted as it streams (a chunked body): the reader gets `BodyTooLarge`, an `ApiError`."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            for message in _json_response(413 if declared.isdigit() else 400,
                                          str(BodyTooLarge(self.limit)) if declared.isdigit()
                                          else "Content-Length must be a number of bytes."):
                await send(message)
            return
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counting_receive, send)


# Values -----------------------------------------------------------------------------------------
def parse_k(value, default: int) -> int:
    """`k` from a JSON number, a form field or a query string: an integer 1-MAX_K, nothing else."""
    if value is None:
        return default
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 6:
        value = int(value.strip())
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)  # 5.0 is 5; 3.7 is not
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(422, f"k must be an integer between 1 and {MAX_K}. Received: k={_show(value)}")
    if not 1 <= value <= MAX_K:
        raise ApiError(422, f"k must be between 1 and {MAX_K}. Received: k={value}")
    return value


def _show(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"


def check_id(id) -> str:
    """An item id that every route can reach (`ID_RULES`), or a 422 saying which rule it breaks."""
    if not isinstance(id, str):
        raise ApiError(422, f"id must be a string. Received: id={_show(id)}")
    problem = id_problem(id)
    if problem:
        raise ApiError(422, f"id {_show(id)} {problem}; {ID_RULES}.")
    return id


def id_problem(id: str) -> str | None:
    if not id:
        return "is empty"
    if len(id) > MAX_ID:
        return f"has {len(id)} characters"
    if id != id.strip():
        return "has leading or trailing spaces"
    if any(unicodedata.category(c)[0] in "CZ" and c != " " for c in id):
        return "has a control or separator character"
    parts = id.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "has an empty, '.' or '..' part"
    if len(parts) > 1 and parts[-1] == "image":
        return "ends in '/image'"
    return None


def check_text(value, name: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(422, f"{name} must be a string. Received: {name}={_show(value)}")
    if len(value) > limit:
        raise ApiError(422, f"{name} must be at most {limit:,} characters. Received: {len(value):,}")
    return value


def check_labels(value) -> dict:
    """`labels`: a JSON object (or its text, from a form) of at most MAX_LABELS scalar values."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except RecursionError:
            raise ApiError(422, "labels must be a flat JSON object; it is nested too deep.") from None
        except ValueError:
            raise ApiError(422, "labels must be a JSON object, e.g. {\"colour\": \"navy\"}.") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(422, f"labels must be a JSON object, e.g. {{\"colour\": \"navy\"}}. Received: {_show(value)}")
    if len(value) > MAX_LABELS:
        raise ApiError(422, f"labels may have at most {MAX_LABELS} keys. Received: {len(value)}")
    for key, item in value.items():
        check_text(key, "a labels key", MAX_LABEL)
        if isinstance(item, (dict, list)):
            raise ApiError(422, f"labels[{key!r}] must be a string, number, true/false or null, not nested.")
        if isinstance(item, float) and not math.isfinite(item):
            raise ApiError(422, f"labels[{key!r}] must be a finite number. Received: {item}")
        if isinstance(item, str):
            check_text(item, f"labels[{key!r}]", MAX_TEXT)
    return value


def item_fields(fields: dict) -> dict:
    """The catalogue fields of an item request (label, text, labels), checked; the id is checked apart."""
    unknown = sorted(set(fields) - set(ITEM_FIELDS))
    if unknown:
        raise ApiError(422, f"Unknown field(s) {unknown}; an item has id, label, text, labels and an image.")
    out = {}
    if "label" in fields:
        out["label"] = check_text(fields["label"], "label", MAX_LABEL)
    if "text" in fields:
        out["text"] = check_text(fields["text"], "text", MAX_TEXT)
    if "labels" in fields:
        out["labels"] = check_labels(fields["labels"])
    return out


def only_fields(fields: dict, allowed: tuple, route: str) -> None:
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise ApiError(422, f"Unknown field(s) {[_show(u, 40) for u in unknown]}; {route} takes "
                            f"{', '.join(allowed)}.")


def decode_b64(value, name: str) -> bytes:
    if not isinstance(value, str):
        raise ApiError(422, f"{name} must be a base64 string. Received: {type(value).__name__}")
    try:
        return base64.b64decode(value.split(",", 1)[-1] if value.startswith("data:") else value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{name} is not valid base64.") from None


# Bodies -----------------------------------------------------------------------------------------
def parse_json(raw: bytes) -> dict:
    try:
        body = json.loads(raw or b"null")
    except RecursionError:
        raise ApiError(400, "The JSON body is nested too deep.") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"The body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise ApiError(422, "The JSON body must be an object.")
    for key, value in body.items():
        if isinstance(value, (dict, list)) and key != "labels":
            raise ApiError(422, f"{_show(key, 40)} must not be an object or a list.")
    return body


async def read_request(request) -> tuple[dict, bytes | None]:
    """(fields, image bytes or None) from a multipart form or a JSON body."""
    from starlette.requests import ClientDisconnect

    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("multipart/form-data"):
            try:
                form = await request.form(max_files=2, max_fields=20)
            except (ApiError, ClientDisconnect):
                raise
            except Exception as error:  # starlette and python-multipart raise several kinds for bad forms
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
            body = parse_json(await request.body())
            data = decode_b64(body.pop("image_b64"), "image_b64") if "image_b64" in body else None
            return body, data
    except ClientDisconnect:
        raise ClientGone() from None
    raise ApiError(415, f"Send multipart/form-data or application/json. Received: {content_type or 'no content type'}")
