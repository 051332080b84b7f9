"""Shared test helpers: tiny image files of every kind, good and bad."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def write_image(path, size=(24, 16), colour=(200, 30, 40), mode="RGB", fmt=None, seed=None) -> str:
    """Writes an image of `size` (height, width); random pixels when `seed` is given."""
    os.makedirs(os.path.dirname(str(path)) or ".", exist_ok=True)
    height, width = size
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    if seed is not None:
        pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    else:
        value = list(colour) + [255] * 4
        pixels = np.empty((height, width, channels), np.uint8)
        pixels[:] = value[:channels] if mode in ("RGB", "RGBA") else [value[0], 255][:channels]
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
    image.save(str(path), format=fmt)
    return str(path)


def write_truncated_jpeg(path, size=(64, 48)) -> str:
    """A JPEG cut in half: its header is fine, its pixels are not."""
    write_image(path, size=size, seed=1, fmt="JPEG")
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])
    return str(path)


def write_text(path, text="this is not an image\n") -> str:
    os.makedirs(os.path.dirname(str(path)) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return str(path)


def write_empty(path) -> str:
    os.makedirs(os.path.dirname(str(path)) or ".", exist_ok=True)
    open(path, "wb").close()
    return str(path)


def clustered_embeddings(classes: int, per_class: int, dim: int = 8, spread: float = 0.05, seed: int = 0):
    """Well separated clusters: (embeddings, labels)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 10
    labels = np.repeat(np.arange(classes), per_class)
    return centres[labels] + rng.normal(scale=spread, size=(len(labels), dim)), labels


def check_model(model, input_shape, output_shape, tmp_path, loss=None, labels=None):
    """The standard checks of a layer-built model: output shape, config round trip,
    `.keras` save -> load with equal outputs, and one training step that changes the weights."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (4, *input_shape)).astype("float32")
    y = model.predict(x, verbose=0)
    assert y.shape == (4, *output_shape)
    clone = model.__class__.from_config(model.get_config())
    assert clone.count_params() == model.count_params()
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(restored.predict(x, verbose=0), y, rtol=1e-4, atol=1e-5)
    if loss is not None:
        before = [w.copy() for w in model.get_weights()]
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
        model.fit(x, np.asarray(labels if labels is not None else [0, 0, 1, 1]), batch_size=4, epochs=1, verbose=0)
        assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))


def check_layer(layer, input_shape, tmp_path):
    """Layer checks: output shape matches compute_output_shape, config round trip, save/load."""
    import keras

    inputs = keras.Input(input_shape)
    outputs = layer(inputs)
    model = keras.Model(inputs, outputs)
    expected = layer.compute_output_shape((None, *input_shape))
    assert tuple(outputs.shape) == tuple(expected)
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    check_model(model, input_shape, tuple(expected[1:]), tmp_path)


def write_png_bomb(path, side: int = 20000) -> str:
    """A real, valid grey PNG of side x side pixels (400 M at 20000) in well under 1 MB: all zeros compress ~1000:1."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, parts = zlib.compressobj(9), []
    row = b"\x00" * (side + 1)  # filter byte + one byte per pixel
    for _ in range(side):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    os.makedirs(os.path.dirname(str(path)) or ".", exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts))
                     + chunk(b"IEND", b""))
    return str(path)


# The search API over real HTTP ---------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_call(url, method="GET", body=None, headers=None, content_type=None, timeout=60):
    """(status, parsed JSON or text) of one request; never raises on HTTP errors."""
    import json
    import urllib.error
    import urllib.request

    if isinstance(body, dict):
        body, content_type = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw, status, kind = response.read(), response.status, response.headers.get("content-type", "")
    except urllib.error.HTTPError as error:
        raw, status, kind = error.read(), error.code, error.headers.get("content-type", "")
    return status, (json.loads(raw) if "json" in kind else raw.decode("utf-8", "replace"))


def multipart_body(fields: dict, image: bytes | None = None, filename="photo.jpg"):
    """(body, content type) of a multipart form with `fields` and, if given, the file `image`."""
    import uuid

    boundary = uuid.uuid4().hex
    parts = []
    for key, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    if image is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + image + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def serve_in_thread(app):
    """Serves an ASGI app with uvicorn on a free loopback port in a daemon thread: (base URL, stop())."""
    import threading
    import time

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(timeout=10)

    return f"http://127.0.0.1:{port}", stop
