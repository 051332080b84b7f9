"""TF Serving's REST API over the standard library's threading HTTP server (`rest_server`), for
`python -m serving.grpc_server --rest-port 8501`; requests are checked by `serving.model_inputs`."""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from serving.model_inputs import (
    DEFAULT_LIMITS,
    REST_TIMEOUT,
    Limits,
    _short,
    check_json_input,
    check_request_bytes,
    decode_json_value,
    parse_json_body,
)
from visnet.exported import (
    ExportedModel,
    InvalidInputError,
    ModelNotFoundError,
    SignatureNotFoundError,
    check_input_names,
)

log = logging.getLogger(__name__)


def rest_predict(model: ExportedModel, body: dict, limits: Limits = DEFAULT_LIMITS) -> dict:
    """One REST `:predict` request body -> response body (TF Serving's row and columnar formats)."""
    if not isinstance(body, dict):
        raise InvalidInputError(f"The request body must be a JSON object. Received: {type(body).__name__}")
    signature = body.get("signature_name", "serving_default")
    if not isinstance(signature, str):
        raise InvalidInputError(f"signature_name must be a string. Received: {_short(signature)}")
    signature = signature or "serving_default"
    specs = model.input_specs(signature)
    if ("instances" in body) == ("inputs" in body):
        raise InvalidInputError("The request needs exactly one of 'instances' (row format) or 'inputs' (columnar).")
    if "inputs" in body:
        inputs = decode_json_value(body["inputs"], limits.max_json_depth, 2)
        if not isinstance(inputs, dict):
            if len(specs) != 1:
                raise InvalidInputError(f"'inputs' must be an object naming the signature's inputs {sorted(specs)}.")
            inputs = {next(iter(specs)): inputs}
        rows = None
    else:
        rows = decode_json_value(body["instances"], limits.max_json_depth, 2)
        if not isinstance(rows, list) or not rows:
            raise InvalidInputError(f"'instances' must be a non-empty list. Received: {_short(body['instances'])}")
        if len(rows) > limits.max_batch:
            raise InvalidInputError(f"'instances' has {len(rows)} rows: at most {limits.max_batch} per request.")
        if all(isinstance(row, dict) for row in rows):
            for number, row in enumerate(rows):
                if set(row) != set(specs):
                    raise InvalidInputError(f"instance {number} has inputs {sorted(row)}; every instance needs "
                                            f"exactly the inputs {sorted(specs)}.")
            inputs = {key: [row[key] for row in rows] for key in specs}
        elif len(specs) == 1:
            inputs = {next(iter(specs)): rows}
        else:
            raise InvalidInputError(f"instances must be objects naming the inputs {sorted(specs)}.")
    check_input_names(signature, specs, inputs)
    check_request_bytes(sum(check_json_input(key, inputs[key], spec, limits) for key, spec in specs.items()), limits)
    outputs = model.predict(inputs, signature)
    names = {k: k.endswith("_bytes") for k in outputs}
    if rows is None:
        if len(outputs) == 1:
            key = next(iter(outputs))
            return {"outputs": encode_json_value(outputs[key], names[key])}
        return {"outputs": {k: encode_json_value(v, names[k]) for k, v in outputs.items()}}
    columns = {k: encode_json_value(v, names[k]) for k, v in outputs.items()}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    return {"predictions": [{k: columns[k][i] for k in columns} for i in range(len(rows))]}


def encode_json_value(array: np.ndarray, binary: bool = False):
    """numpy -> JSON: strings as text (as `{"b64": ...}` for `*_bytes` outputs or non-UTF-8 bytes)."""
    if array.dtype == object or array.dtype.kind == "S":
        def one(item):
            if isinstance(item, bytes):
                if not binary:
                    try:
                        return item.decode("utf-8")
                    except UnicodeDecodeError:
                        pass
                return {"b64": base64.b64encode(item).decode("ascii")}
            return item

        return np.vectorize(one, otypes=[object])(array).tolist() if array.size else array.tolist()
    return array.tolist()


_PREDICT = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")
_STATUS = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?(/metadata)?$")
_GONE = (ConnectionError, TimeoutError)  # a client that left (reset, broken pipe) or stalled


class RestServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that counts departed clients (`departed_clients`) instead of printing tracebacks."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog (socketserver's 5 drops the connections of a burst)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.departed_clients = 0
        self._lock = threading.Lock()

    def departed(self) -> None:
        with self._lock:
            self.departed_clients += 1

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], _GONE):
            return self.departed()
        log.exception("REST request from %s failed", client_address)


def rest_server(model: ExportedModel, port: int, host: str = "127.0.0.1", max_body: int | None = None,
                limits: Limits = DEFAULT_LIMITS, timeout: float = REST_TIMEOUT):
    """A RestServer with TF Serving's REST API, serving in a daemon thread (`server.server_port`).

    `timeout` (seconds) bounds each socket read and write, so a client that declares more body than it
    sends, or stops reading, holds its thread at most that long.
    """
    if max_body is None:
        max_body = limits.max_message_bytes
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds. Received: timeout={timeout}")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet: one line per request is noise under load
            return

        def setup(self):
            self.timeout = timeout  # StreamRequestHandler.setup applies it to the socket
            self._counted = False
            super().setup()

        def _gone(self):
            """The client left: close quietly, counted once per connection."""
            self.close_connection = True
            if not self._counted:
                self._counted = True
                self.server.departed()

        def handle(self):
            try:
                super().handle()
            except _GONE:
                self._gone()

        def __getattr__(self, name):
            if name.startswith("do_"):  # PUT, DELETE, HEAD, ...: 405 rather than http.server's 501
                return self._not_allowed
            raise AttributeError(name)

        def _not_allowed(self):
            self.close_connection = True  # its body, if any, is not read
            self._send(405, {"error": f"Method {self.command} is not allowed: use GET or POST."}, {"Allow": "GET, POST"})

        def _send(self, status: int, body: dict, headers: dict | None = None):
            data = json.dumps(body).encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
            except _GONE:
                self._gone()

        def _model(self, name, version):
            if name != model.name:
                raise ModelNotFoundError(f"Servable not found for request: Latest({_short(name, 100)})")
            if version is not None and (len(version) > 18 or int(version) != model.version):
                raise ModelNotFoundError(f"Servable not found for request: Specific({name}, {_short(version, 30)})")

        def do_GET(self):  # noqa: N802
            match = _STATUS.match(self.path)
            try:
                if not match:
                    return self._send(404, {"error": f"Malformed request: GET {_short(self.path, 200)}"})
                self._model(match.group(1), match.group(2))
                if match.group(3):
                    from google.protobuf import json_format

                    defs = {k: json_format.MessageToDict(v) for k, v in model.signature_defs().items()}
                    return self._send(200, {"model_spec": {"name": model.name, "version": str(model.version)},
                                            "metadata": {"signature_def": {"signature_def": defs}}})
                return self._send(200, {"model_version_status": [
                    {"version": str(model.version), "state": "AVAILABLE",
                     "status": {"error_code": "OK", "error_message": ""}}]})
            except ModelNotFoundError as error:
                return self._send(404, {"error": str(error)})
            except _GONE:
                raise
            except Exception as error:  # a bug of ours: answer, log, keep serving
                log.exception("GET %s failed", self.path)
                return self._send(500, {"error": f"{type(error).__name__}: {error}"})

        def _body(self):
            """The request body, or None once an error has been answered."""
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                return self._send(411, {"error": "Transfer-Encoding is not supported: send a Content-Length."})
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > max_body:
                self.close_connection = True
                return self._send(413 if length > 0 else 400,
                                  {"error": f"Content-Length must be between 0 and {max_body} bytes."})
            try:
                raw = self.rfile.read(length)
            except TimeoutError:
                self.close_connection = True
                return self._send(408, {"error": f"The body did not arrive within {timeout} s "
                                                  f"(Content-Length: {length})."})
            if len(raw) < length:  # the client closed its side early
                self._gone()
                return self._send(400, {"error": f"The body ended after {len(raw)} of its {length} bytes."})
            return raw

        def do_POST(self):  # noqa: N802
            raw = self._body()
            if raw is None:
                return None
            match = _PREDICT.match(self.path)
            if not match:
                return self._send(404, {"error": f"Malformed request: POST {_short(self.path, 200)}"})
            try:
                self._model(match.group(1), match.group(2))
                body = parse_json_body(raw, limits.max_json_depth)
                return self._send(200, rest_predict(model, body, limits))
            except ModelNotFoundError as error:
                return self._send(404, {"error": str(error)})
            except (SignatureNotFoundError, InvalidInputError, ValueError, TypeError, OverflowError) as error:
                return self._send(400, {"error": str(error)})
            except _GONE:
                raise
            except MemoryError:
                return self._send(503, {"error": "out of memory: try a smaller request."})
            except Exception as error:  # a bug of ours: answer, log, keep serving
                log.exception("POST %s failed", self.path)
                return self._send(500, {"error": f"{type(error).__name__}: {error}"})

    server = RestServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="rest-server").start()
    return server
