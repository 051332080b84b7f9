"""TF Serving's PredictionService over grpcio, for machines without TF Serving:
`python -m serving.grpc_server --model-base-path models/NAME [--port 8500] [--rest-port 8501]`.

Production serves exports with TF Serving itself (`tensorflow_model_server` or the
`tensorflow/serving` image, see the README). This server speaks the same protocol from the same
SavedModel so that clients, the search API and tests run anywhere:

- gRPC `tensorflow.serving.PredictionService`: `Predict` and `GetModelMetadata` (signature_def),
  with TF Serving's status codes: NOT_FOUND for an unknown model or version, FAILED_PRECONDITION
  for an unknown signature, INVALID_ARGUMENT for bad inputs;
- REST (optional, `--rest-port`): `POST /v1/models/NAME[/versions/N]:predict` in the row
  (`instances`) and columnar (`inputs`) formats, binary strings as `{"b64": ...}`;
  `GET /v1/models/NAME` (version status) and `GET /v1/models/NAME/metadata`.

Like TF Serving it loads the highest numeric version under the base path.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import signal
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from visnet.exported import (
    ExportedModel,
    InvalidInputError,
    ModelNotFoundError,
    SignatureNotFoundError,
)


# gRPC -----------------------------------------------------------------------------------------
def _servicer_class():
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        """Predict and GetModelMetadata of one ExportedModel."""

        def __init__(self, model: ExportedModel):
            self.model = model

        def _check_spec(self, spec, context):
            import grpc

            if spec.name != self.model.name:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({spec.name})")
            if spec.HasField("version") and spec.version.value != self.model.version:
                context.abort(grpc.StatusCode.NOT_FOUND,
                              f"Servable not found for request: Specific({spec.name}, {spec.version.value})")

        def Predict(self, request, context):  # noqa: N802 (the protocol's name)
            import grpc
            import tensorflow as tf
            from tensorflow_serving.apis import predict_pb2

            self._check_spec(request.model_spec, context)
            signature = request.model_spec.signature_name or "serving_default"
            try:
                inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
                outputs = self.model.predict(inputs, signature, list(request.output_filter) or None)
            except SignatureNotFoundError as error:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
            except (InvalidInputError, TypeError, ValueError) as error:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            response = predict_pb2.PredictResponse()
            response.model_spec.name = self.model.name
            response.model_spec.version.value = self.model.version
            response.model_spec.signature_name = signature
            for key, value in outputs.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
            return response

        def GetModelMetadata(self, request, context):  # noqa: N802
            import grpc
            from tensorflow_serving.apis import get_model_metadata_pb2

            self._check_spec(request.model_spec, context)
            fields = set(request.metadata_field)
            if fields - {"signature_def"}:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"Metadata field {sorted(fields - {'signature_def'})} is not supported; "
                              "the only field is signature_def.")
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = self.model.name
            response.model_spec.version.value = self.model.version
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for name, proto in self.model.signature_defs().items():
                signature_map.signature_def[name].CopyFrom(proto)
            response.metadata["signature_def"].Pack(signature_map)
            return response

    return PredictionServicer


def grpc_server(model: ExportedModel, port: int, host: str = "127.0.0.1", workers: int = 8):
    """A started grpc.Server serving `model` on host:port (port 0 picks a free one: `server.port`)."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         options=[("grpc.max_receive_message_length", 64 * 1024 * 1024),
                                  ("grpc.max_send_message_length", 64 * 1024 * 1024)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_servicer_class()(model), server)
    server.port = server.add_insecure_port(f"{host}:{port}")
    if not server.port:
        raise OSError(f"Could not bind the gRPC server to {host}:{port}.")
    server.start()
    return server


# REST -----------------------------------------------------------------------------------------
def decode_json_value(value):
    """TF Serving's JSON for binary strings: `{"b64": ...}` becomes bytes, recursively."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError):
            raise InvalidInputError("a {\"b64\": ...} value is not valid base64.") from None
    if isinstance(value, list):
        return [decode_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: decode_json_value(v) for k, v in value.items()}
    return value


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


def rest_predict(model: ExportedModel, body: dict) -> dict:
    """One REST `:predict` request body -> response body (TF Serving's row and columnar formats)."""
    if not isinstance(body, dict):
        raise InvalidInputError("The request body must be a JSON object.")
    signature = body.get("signature_name", "serving_default")
    specs = model.input_specs(signature)
    if ("instances" in body) == ("inputs" in body):
        raise InvalidInputError("The request needs exactly one of 'instances' (row format) or 'inputs' (columnar).")
    if "inputs" in body:
        inputs = decode_json_value(body["inputs"])
        if not isinstance(inputs, dict):
            if len(specs) != 1:
                raise InvalidInputError(f"'inputs' must name the signature's inputs {sorted(specs)}.")
            inputs = {next(iter(specs)): inputs}
        outputs = model.predict(inputs, signature)
        names = {k: k.endswith("_bytes") for k in outputs}
        if len(outputs) == 1:
            key = next(iter(outputs))
            return {"outputs": encode_json_value(outputs[key], names[key])}
        return {"outputs": {k: encode_json_value(v, names[k]) for k, v in outputs.items()}}
    rows = decode_json_value(body["instances"])
    if not isinstance(rows, list) or not rows:
        raise InvalidInputError("'instances' must be a non-empty list.")
    if all(isinstance(row, dict) for row in rows):
        inputs = {key: [row.get(key) for row in rows] for key in specs}
        if any(value is None for values in inputs.values() for value in values):
            raise InvalidInputError(f"every instance needs the inputs {sorted(specs)}.")
    elif len(specs) == 1:
        inputs = {next(iter(specs)): rows}
    else:
        raise InvalidInputError(f"instances must be objects naming the inputs {sorted(specs)}.")
    outputs = model.predict(inputs, signature)
    names = {k: k.endswith("_bytes") for k in outputs}
    columns = {k: encode_json_value(v, names[k]) for k, v in outputs.items()}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    return {"predictions": [{k: columns[k][i] for k in columns} for i in range(len(rows))]}


def rest_server(model: ExportedModel, port: int, host: str = "127.0.0.1", max_body: int = 64 * 1024 * 1024):
    """A ThreadingHTTPServer with TF Serving's REST API, serving in a daemon thread (`server.server_port`)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet: one line per request is noise under load
            return

        def _send(self, status: int, body: dict):
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _model(self, name, version):
            if name != model.name:
                raise ModelNotFoundError(f"Servable not found for request: Latest({name})")
            if version is not None and int(version) != model.version:
                raise ModelNotFoundError(f"Servable not found for request: Specific({name}, {version})")

        def do_GET(self):  # noqa: N802
            match = _STATUS.match(self.path)
            try:
                if not match:
                    return self._send(404, {"error": f"Malformed request: GET {self.path}"})
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

        def do_POST(self):  # noqa: N802
            match = _PREDICT.match(self.path)
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > max_body:
                self.close_connection = True
                return self._send(413 if length > 0 else 400,
                                  {"error": f"Content-Length must be between 0 and {max_body} bytes."})
            raw = self.rfile.read(length)
            if not match:
                return self._send(404, {"error": f"Malformed request: POST {self.path}"})
            try:
                self._model(match.group(1), match.group(2))
                body = json.loads(raw.decode("utf-8"))
                return self._send(200, rest_predict(model, body))
            except ModelNotFoundError as error:
                return self._send(404, {"error": str(error)})
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                return self._send(400, {"error": f"JSON Parse error: {error}"})
            except (SignatureNotFoundError, InvalidInputError, ValueError, TypeError) as error:
                return self._send(400, {"error": str(error)})

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="rest-server").start()
    return server


# CLI --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving.grpc_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-base-path", required=True, help="models/NAME: the folder of numeric versions")
    parser.add_argument("--model-name", help="the served name (default: the folder name)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500, as TF Serving)")
    parser.add_argument("--rest-port", type=int, default=0,
                        help="REST port (TF Serving uses 8501; default 0: no REST server)")
    parser.add_argument("--workers", type=int, default=8, help="gRPC worker threads (default 8)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from visnet.cli import report_error

    try:
        model = ExportedModel(args.model_base_path, args.model_name)
        server = grpc_server(model, args.port, args.host, args.workers)
        rest = rest_server(model, args.rest_port, args.host) if args.rest_port else None
    except (ModelNotFoundError, OSError, ValueError, RuntimeError) as error:
        return report_error(error)
    print(f"serving {model.name} version {model.version} ({', '.join(model.signatures)}) "
          f"over gRPC on {args.host}:{server.port}" + (f", REST on {args.host}:{rest.server_port}" if rest else ""),
          flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=2).wait()
    if rest:
        rest.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
