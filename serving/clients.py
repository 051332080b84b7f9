"""Clients of TF Serving (or `serving.grpc_server`): gRPC `PredictionService` and the REST API.

    client = GrpcClient("localhost:8500", "shop", timeout=5.0)
    embeddings, valid = client.embed([open("photo.jpg", "rb").read()])
    client.metadata()          # {"serving_default": {"inputs": {...}, "outputs": {...}}, ...}

    rest = RestClient("http://localhost:8501", "shop")
    rest.predict({"image_bytes": [jpeg]})    # binary strings travel as {"b64": ...}

Both retry a call that finds the server UNAVAILABLE (down, restarting, overloaded) with
exponential back-off, give up after `timeout` seconds per attempt, and raise one error class per
failure (`visnet.exported`): a missing model or version, a missing signature, bad inputs.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

import numpy as np

from visnet.exported import (
    DeadlineError,
    InvalidInputError,
    ModelNotFoundError,
    Predictor,
    ServingError,
    SignatureNotFoundError,
    UnavailableError,
)


class _Client(Predictor):
    """What both clients share: settings and retries."""

    def __init__(self, model: str, version: int | None, timeout: float, retries: int, backoff: float):
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds. Received: timeout={timeout}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0. Received: retries={retries}")
        self.model, self.version, self.timeout, self.retries, self.backoff = model, version, timeout, retries, backoff

    def _retry(self, call):
        for attempt in range(self.retries + 1):
            try:
                return call()
            except UnavailableError:
                if attempt == self.retries:
                    raise
                time.sleep(self.backoff * 2**attempt)


class GrpcClient(_Client):
    """`tensorflow.serving.PredictionService` over gRPC.

    Args:
        target: str. host:port of the server (TF Serving's gRPC port is 8500).
        model: str. The served model name.
        version: int or None. A specific version; None for the latest.
        timeout: float. Seconds per attempt.
        retries: int. Extra attempts when the server is UNAVAILABLE.
        backoff: float. First wait between attempts, doubled each time.
    """

    def __init__(self, target: str, model: str, version: int | None = None, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.2):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        super().__init__(model, version, timeout, retries, backoff)
        self.target = target
        self._channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024),
                                                               ("grpc.max_send_message_length", 64 * 1024 * 1024)])
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _spec(self, spec, signature: str | None = None):
        spec.name = self.model
        if self.version is not None:
            spec.version.value = self.version
        if signature:
            spec.signature_name = signature

    def _call(self, method, request):
        import grpc

        def attempt():
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as error:
                code, details = error.code(), error.details()
                if code == grpc.StatusCode.UNAVAILABLE:
                    raise UnavailableError(f"{self.target} is unavailable: {details}") from None
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise DeadlineError(f"{self.target} did not answer within {self.timeout} s.") from None
                if code == grpc.StatusCode.NOT_FOUND:
                    raise ModelNotFoundError(f"Model {self.model!r} (version {self.version or 'latest'}) is not "
                                             f"served by {self.target}: {details}") from None
                if code == grpc.StatusCode.FAILED_PRECONDITION and "signature" in details.lower():
                    raise SignatureNotFoundError(details) from None
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    raise InvalidInputError(details) from None
                raise ServingError(f"{self.target}: {code.name}: {details}") from None

        return self._retry(attempt)

    def predict(self, inputs: dict, signature: str = "serving_default") -> dict:
        """Runs `signature` on `inputs` (name -> array-like); returns name -> numpy array."""
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, signature)
        for key, value in inputs.items():
            if isinstance(value, list) and value and isinstance(value[0], bytes):
                proto = tf.make_tensor_proto(value, dtype=tf.string, shape=[len(value)])
            else:
                proto = tf.make_tensor_proto(np.asarray(value))
            request.inputs[key].CopyFrom(proto)
        response = self._call(self._stub.Predict, request)
        return {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}

    def metadata(self) -> dict:
        """The model's signatures: name -> {"inputs": {alias: (dtype, shape)}, "outputs": {...}}."""
        from tensorflow.core.framework import types_pb2
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec)
        response = self._call(self._stub.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)

        def tensors(infos):
            return {alias: (types_pb2.DataType.Name(info.dtype),
                            [d.size for d in info.tensor_shape.dim] if not info.tensor_shape.unknown_rank else None)
                    for alias, info in infos.items()}

        return {name: {"inputs": tensors(sig.inputs), "outputs": tensors(sig.outputs)}
                for name, sig in signature_map.signature_def.items()}


class RestClient(_Client):
    """TF Serving's REST API (`POST /v1/models/NAME[/versions/N]:predict`, columnar format).

    Args:
        url: str. Base URL (TF Serving's REST port is 8501), e.g. `http://localhost:8501`.
        model, version, timeout, retries, backoff: as `GrpcClient`.
    """

    def __init__(self, url: str, model: str, version: int | None = None, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.2):
        super().__init__(model, version, timeout, retries, backoff)
        self.url = url.rstrip("/")
        self._outputs: dict[str, list[str]] = {}

    def _path(self, suffix: str = "") -> str:
        version = f"/versions/{self.version}" if self.version is not None else ""
        return f"{self.url}/v1/models/{self.model}{version}{suffix}"

    def _request(self, url: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")

        def attempt():
            request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as error:
                try:
                    message = json.loads(error.read().decode("utf-8")).get("error", error.reason)
                except (ValueError, AttributeError):
                    message = error.reason
                if error.code == 404:
                    raise ModelNotFoundError(f"{url}: {message}") from None
                if error.code == 503:
                    raise UnavailableError(f"{url}: {message}") from None
                if error.code == 400 and "signature key" in str(message).lower():
                    raise SignatureNotFoundError(str(message)) from None
                if error.code == 400:
                    raise InvalidInputError(str(message)) from None
                raise ServingError(f"{url}: HTTP {error.code}: {message}") from None
            except urllib.error.URLError as error:
                if isinstance(error.reason, TimeoutError):
                    raise DeadlineError(f"{url} did not answer within {self.timeout} s.") from None
                raise UnavailableError(f"{url} is unavailable: {error.reason}") from None
            except TimeoutError:
                raise DeadlineError(f"{url} did not answer within {self.timeout} s.") from None
            except ConnectionError as error:
                raise UnavailableError(f"{url} is unavailable: {error}") from None

        return self._retry(attempt)

    def predict(self, inputs: dict, signature: str = "serving_default") -> dict:
        """Runs `signature` on `inputs`; bytes travel as `{"b64": ...}`; returns name -> numpy array."""
        def encode(value):
            if isinstance(value, bytes):
                return {"b64": base64.b64encode(value).decode("ascii")}
            if isinstance(value, np.ndarray):
                return value.tolist()
            if isinstance(value, (list, tuple)):
                return [encode(v) for v in value]
            return value

        body = {"signature_name": signature, "inputs": {key: encode(value) for key, value in inputs.items()}}
        outputs = self._request(self._path(":predict"), body)["outputs"]
        if not isinstance(outputs, dict):  # TF Serving leaves a signature's only output unnamed
            outputs = {self._output_names(signature)[0]: outputs}
        return {key: np.asarray(value) for key, value in outputs.items()}

    def _output_names(self, signature: str) -> list[str]:
        if signature not in self._outputs:
            defs = self._request(self._path("/metadata"))["metadata"]["signature_def"]["signature_def"]
            for name, definition in defs.items():
                self._outputs[name] = sorted(definition.get("outputs", {}))
        return self._outputs[signature]

    def status(self) -> dict:
        """The model's version status (`GET /v1/models/NAME`)."""
        return self._request(self._path())
