"""TF Serving protocol: our PredictionService server (gRPC and REST) and the clients, through the real protocol."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from helpers import write_image

from visnet.exported import (
    DeadlineError,
    InvalidInputError,
    ModelNotFoundError,
    SignatureNotFoundError,
    UnavailableError,
)


@pytest.fixture(scope="module")
def base_path(weak_run, tmp_path_factory):
    from visnet.exporting import export_run

    out = str(tmp_path_factory.mktemp("models") / "words")
    export_run(weak_run, out, which="last", tags_k=4)
    export_run(weak_run, out, which="last", tags_k=5)  # version 2: the one served
    return out


@pytest.fixture(scope="module")
def servers(base_path):
    from serving.grpc_server import grpc_server, rest_server
    from visnet.exported import ExportedModel

    model = ExportedModel(base_path)
    grpc, rest = grpc_server(model, 0), rest_server(model, 0)
    yield model, f"127.0.0.1:{grpc.port}", f"http://127.0.0.1:{rest.server_port}"
    grpc.stop(None)
    rest.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    return [open(write_image(root / f"{i}.jpg", size=(50 + 10 * i, 40), seed=i, fmt="JPEG"), "rb").read()
            for i in range(3)]


def _clients(servers, **kwargs):
    from serving.clients import GrpcClient, RestClient

    _, grpc_target, rest_url = servers
    model = kwargs.pop("model", "words")
    return [GrpcClient(grpc_target, model, **kwargs), RestClient(rest_url, model, **kwargs)]


def test_the_highest_version_is_loaded(servers):
    model, _, _ = servers
    assert model.version == 2 and model.metadata["tags_k"] == 5
    assert model.signatures == ["serving_default", "tags", "text_query"]


def test_both_clients_get_what_the_model_computes(servers, images):
    model, _, _ = servers
    local = model.predict({"image_bytes": images + [b"junk"]})
    for client in _clients(servers):
        embeddings, valid = client.embed(images + [b"junk"])
        np.testing.assert_allclose(embeddings, local["embedding"], atol=1e-6)
        assert valid.tolist() == [True, True, True, False]
        tags = client.tags(images[:1] + [b"junk"])
        assert len(tags[0]) == 5 and tags[1] == [] and tags[0][0][1] >= tags[0][1][1]
        query = client.text_query([[0, 1], [2]])
        expected = model.predict({"word_ids": np.array([[0, 1], [2, -1]], np.int32)}, "text_query")["query"]
        np.testing.assert_allclose(query, expected, atol=1e-6)


def test_metadata_lists_the_signatures(servers):
    grpc_client, rest_client = _clients(servers)
    metadata = grpc_client.metadata()
    assert set(metadata) == {"serving_default", "tags", "text_query"}
    assert metadata["serving_default"]["inputs"] == {"image_bytes": ("DT_STRING", [-1])}
    assert set(metadata["serving_default"]["outputs"]) == {"embedding", "valid"}
    assert rest_client.status()["model_version_status"][0]["version"] == "2"


def test_errors_name_the_missing_model_version_signature_or_input(servers, images):
    for client in _clients(servers, model="nope"):
        with pytest.raises(ModelNotFoundError, match="nope"):
            client.embed(images)
    for client in _clients(servers, version=7):
        with pytest.raises(ModelNotFoundError, match="7"):
            client.embed(images)
    for client in _clients(servers):
        with pytest.raises(SignatureNotFoundError, match="'nosig' not found"):
            client.predict({"image_bytes": images}, "nosig")
        with pytest.raises(InvalidInputError, match="'wrong'"):
            client.predict({"wrong": images})
        with pytest.raises(InvalidInputError, match="word_ids"):
            client.predict({"word_ids": [["a", "b"]]}, "text_query")


def test_rest_row_format_and_bad_requests(servers, images):
    import base64
    import json
    import urllib.error
    import urllib.request

    _, _, url = servers

    def post(body, path="/v1/models/words:predict"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            with urllib.request.urlopen(urllib.request.Request(url + path, data=data), timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, body = post({"instances": [{"b64": base64.b64encode(images[0]).decode()}]})
    assert status == 200 and len(body["predictions"]) == 1 and len(body["predictions"][0]["embedding"]) == 16
    status, body = post({"signature_name": "text_query", "instances": [{"word_ids": [0, 1]}]})
    assert status == 200 and len(body["predictions"][0]) == 16  # one output: unnamed, as TF Serving does
    assert post(b"{not json")[0] == 400
    assert post({"instances": [{"b64": "***"}]}) == (400, {"error": 'a {"b64": ...} value is not valid base64.'})
    assert post({"inputs": [], "instances": []})[0] == 400
    assert post({"instances": []}, "/v1/models/words/versions/1:predict")[0] == 404


def test_unavailable_is_retried_then_reported(servers, images):
    from serving.clients import GrpcClient, RestClient
    from serving.grpc_server import grpc_server

    model, _, _ = servers
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = []
    # The server comes up 0.3 s after the first attempt: the client's retries find it.
    timer = threading.Timer(0.3, lambda: started.append(grpc_server(model, port)))
    timer.start()
    try:
        embeddings, _ = GrpcClient(f"127.0.0.1:{port}", "words", retries=6, backoff=0.1).embed(images[:1])
        assert embeddings.shape == (1, 16)
    finally:
        timer.join()
        for server in started:
            server.stop(None)
    begin = time.monotonic()
    for client in (GrpcClient("127.0.0.1:1", "words", retries=2, backoff=0.05, timeout=2),
                   RestClient("http://127.0.0.1:1", "words", retries=2, backoff=0.05, timeout=2)):
        with pytest.raises(UnavailableError, match="unavailable"):
            client.embed(images[:1])
    assert time.monotonic() - begin < 5


def test_a_slow_server_is_a_deadline_error(images):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from serving.clients import GrpcClient

    class Slow(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802
            time.sleep(1.0)
            context.abort(grpc.StatusCode.INTERNAL, "too late")

    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Slow(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with pytest.raises(DeadlineError, match="0.2 s"):
            GrpcClient(f"127.0.0.1:{port}", "words", timeout=0.2).embed(images[:1])
    finally:
        server.stop(None)


def test_client_settings_are_checked():
    from serving.clients import RestClient

    with pytest.raises(ValueError, match="timeout must be > 0"):
        RestClient("http://x", "m", timeout=0)
    with pytest.raises(ValueError, match="retries must be >= 0"):
        RestClient("http://x", "m", retries=-1)


@pytest.mark.slow
def test_the_server_command_serves_until_terminated(base_path, images, tmp_path):
    from serving.clients import GrpcClient

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([sys.executable, "-m", "serving.grpc_server", "--model-base-path", base_path,
                                "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=env)
    try:
        line = process.stdout.readline()
        assert "serving words version 2" in line and f":{port}" in line
        embeddings, valid = GrpcClient(f"127.0.0.1:{port}", "words").embed(images)
        assert embeddings.shape == (3, 16) and valid.all()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    missing = subprocess.run([sys.executable, "-m", "serving.grpc_server", "--model-base-path",
                              str(tmp_path / "none")], capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 2 and "Model base path not found" in missing.stderr
