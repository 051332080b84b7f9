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

What a request may contain, and the limits, are `serving.model_inputs`'; the REST server is
`serving.rest_server`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from concurrent import futures

from serving.model_inputs import DEFAULT_LIMITS, REST_TIMEOUT, Limits, arrays_from_protos
from serving.rest_server import rest_server
from visnet.exported import (
    ExportedModel,
    InvalidInputError,
    ModelNotFoundError,
    SignatureNotFoundError,
)

__all__ = ["build_parser", "grpc_server", "main", "rest_server"]

log = logging.getLogger(__name__)


# gRPC -----------------------------------------------------------------------------------------
def _servicer_class():
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        """Predict and GetModelMetadata of one ExportedModel."""

        def __init__(self, model: ExportedModel, limits: Limits = DEFAULT_LIMITS):
            self.model, self.limits = model, limits

        def _check_spec(self, spec):
            if spec.name != self.model.name:
                raise ModelNotFoundError(f"Servable not found for request: Latest({spec.name})")
            if spec.HasField("version") and spec.version.value != self.model.version:
                raise ModelNotFoundError(f"Servable not found for request: Specific({spec.name}, {spec.version.value})")
            if spec.HasField("version_label"):
                raise ModelNotFoundError(f"Unrecognized servable version label: {spec.version_label!r} "
                                         f"(this server has no version labels).")

        def _answer(self, context, call):
            """call() -> response; every failure becomes its TF Serving status, never UNKNOWN."""
            import grpc
            import tensorflow as tf

            try:
                return call()
            except ModelNotFoundError as error:
                code, message = grpc.StatusCode.NOT_FOUND, str(error)
            except SignatureNotFoundError as error:
                code, message = grpc.StatusCode.FAILED_PRECONDITION, str(error)
            except (InvalidInputError, ValueError, TypeError, OverflowError, tf.errors.InvalidArgumentError) as error:
                code, message = grpc.StatusCode.INVALID_ARGUMENT, str(error)
            except (MemoryError, tf.errors.ResourceExhaustedError) as error:
                code, message = grpc.StatusCode.RESOURCE_EXHAUSTED, f"out of memory: {error}"
            except Exception as error:  # a bug of ours: say so, keep serving
                log.exception("Predict failed")
                code, message = grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}"
            context.abort(code, message)

        def Predict(self, request, context):  # noqa: N802 (the protocol's name)
            return self._answer(context, lambda: self._predict(request))

        def _predict(self, request):
            import tensorflow as tf
            from tensorflow_serving.apis import predict_pb2

            self._check_spec(request.model_spec)
            signature = request.model_spec.signature_name or "serving_default"
            inputs = arrays_from_protos(self.model, signature, request.inputs, self.limits)
            outputs = self.model.predict(inputs, signature, list(request.output_filter) or None)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = self.model.name
            response.model_spec.version.value = self.model.version
            response.model_spec.signature_name = signature
            for key, value in outputs.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
            return response

        def GetModelMetadata(self, request, context):  # noqa: N802
            return self._answer(context, lambda: self._metadata(request))

        def _metadata(self, request):
            from tensorflow_serving.apis import get_model_metadata_pb2

            self._check_spec(request.model_spec)
            fields = set(request.metadata_field)
            if fields - {"signature_def"}:
                raise InvalidInputError(f"Metadata field {sorted(fields - {'signature_def'})} is not supported; "
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


def grpc_server(model: ExportedModel, port: int, host: str = "127.0.0.1", workers: int = 8,
                limits: Limits = DEFAULT_LIMITS):
    """A started grpc.Server serving `model` on host:port (port 0 picks a free one: `server.port`)."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         options=[("grpc.max_receive_message_length", limits.max_message_bytes),
                                  ("grpc.max_send_message_length", limits.max_message_bytes)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_servicer_class()(model, limits), server)
    server.port = server.add_insecure_port(f"{host}:{port}")
    if not server.port:
        raise OSError(f"Could not bind the gRPC server to {host}:{port}.")
    server.start()
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
    parser.add_argument("--max-batch", type=int, default=DEFAULT_LIMITS.max_batch,
                        help=f"most items per request (default {DEFAULT_LIMITS.max_batch})")
    parser.add_argument("--max-elements", type=int, default=DEFAULT_LIMITS.max_elements,
                        help=f"most elements per input tensor (default {DEFAULT_LIMITS.max_elements})")
    parser.add_argument("--rest-timeout", type=float, default=REST_TIMEOUT,
                        help=f"seconds a REST socket waits for its client (default {REST_TIMEOUT:g})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from visnet.cli import report_error

    try:
        limits = Limits(max_batch=args.max_batch, max_elements=args.max_elements)
        model = ExportedModel(args.model_base_path, args.model_name)
        server = grpc_server(model, args.port, args.host, args.workers, limits)
        rest = rest_server(model, args.rest_port, args.host, limits=limits,
                           timeout=args.rest_timeout) if args.rest_port else None
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
