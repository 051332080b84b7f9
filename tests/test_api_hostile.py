"""The search API as an attacker sees it: each hole a review found, a generated corpus of hostile requests
against the real service (`python -m serving.api` in its own process, its memory measured), kill -9 during
writes, and the large-image lane."""

import base64
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import zlib
from urllib.parse import quote, urlparse

import numpy as np
import pytest
from conftest import API_KEY
from helpers import free_port, http_call, multipart_body, serve_in_thread, write_png_bomb
from PIL import Image

KEY = {"X-API-Key": API_KEY}
#: Peak resident memory (VmHWM) the service may reach while it answers the whole corpus. It idles at
#: about 0.6-0.9 GB (TensorFlow and the model); one 6324x6324 RGB decode is +120 MB. The holes it guards
#: against cost gigabytes (a 37-byte tensor once took a server to 18 GB).
RSS_LIMIT_MB = 1800


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def photo(size=(48, 64), colour=(180, 40, 60)) -> bytes:
    rng = np.random.default_rng(sum(colour))
    pixels = np.clip(np.array(colour) + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    return encoded(Image.fromarray(pixels), "JPEG", quality=90)


def bad_crc_png() -> bytes:
    data = bytearray(encoded(Image.new("RGB", (32, 32), (1, 2, 3)), "PNG"))
    data[29:33] = (zlib.crc32(bytes(data[12:29])) ^ 1).to_bytes(4, "big")
    return bytes(data)


# Each hole, a regression test ----------------------------------------------------------------
def test_a_chunked_body_over_the_limit_is_413_not_500(service):
    """(3) No Content-Length: the limit is counted as the body streams in, and the 413 is an answer."""
    url, *_ = service
    address = urlparse(url)
    body, kind = multipart_body({}, b"\xff\xd8\xff" + os.urandom(11 * 1024 * 1024))
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    try:
        connection.request("POST", "/search", body=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]),
                           headers={"Content-Type": kind, "Transfer-Encoding": "chunked"}, encode_chunked=True)
    except (BrokenPipeError, ConnectionResetError):
        pass
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    assert response.status == 413 and "10,485,760 bytes" in answer["error"]
    assert http_call(url + "/healthz")[0] == 200


def test_deep_json_is_a_4xx(service):
    """(4) 100,000 levels of nesting, and nested labels on an item."""
    url, *_ = service
    deep = b'{"k": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, answer = http_call(url + "/search", "POST", deep, content_type="application/json")
    assert status == 400 and "nested too deep" in answer["error"]
    status, answer = http_call(url + "/items", "POST", {"id": "nested", "image_b64": base64.b64encode(photo()).decode(),
                                                       "labels": {"a": {"b": {"c": 1}}}}, KEY)
    assert status == 422 and "not nested" in answer["error"]
    labels = '{"a": ' + "[" * 5000 + "]" * 5000 + "}"
    body, kind = multipart_body({"id": "nested", "labels": labels}, photo())
    assert http_call(url + "/items", "POST", body, KEY, kind)[0] == 422
    assert http_call(url + "/items/nested")[0] == 404


@pytest.mark.parametrize("k", ["Infinity", "-Infinity", "NaN", "true", "false", "3.7", "1e999", '"3.0"', "[]"])
def test_k_that_is_not_an_integer_is_422(service, k):
    """(5) Infinity was a 500, true was taken as 1 and 3.7 as 3."""
    url, _, records, _ = service
    image = base64.b64encode(open(records[0].path, "rb").read()).decode()
    body = ('{"image_b64": "' + image + '", "k": ' + k + '}').encode()
    status, answer = http_call(url + "/search", "POST", body, content_type="application/json")
    assert status == 422, (k, status, answer)
    body, kind = multipart_body({"k": "3.7"}, open(records[0].path, "rb").read())
    assert http_call(url + "/search", "POST", body, content_type=kind)[0] == 422
    body, kind = multipart_body({"k": "3"}, open(records[0].path, "rb").read())
    status, answer = http_call(url + "/search", "POST", body, content_type=kind)
    assert status == 200 and len(answer["results"]) == 3


REACHABLE_IDS = ["a/b", "shirts/red shirt.jpg", "x:y@z", "ü-ñ-漢", "50%off", "q?x#y", "a.b/.c/d..", "image", "x/images"]
REFUSED_IDS = ["../../etc/passwd", "a//b", "/a", "a/", ".", "..", "a/./b", "a/../b", "a/image", "a\x00b", "a\nb",
               " a", "b ", "", "x" * 201, "tab\there"]


def test_every_id_that_can_be_created_is_reachable_by_every_route(service):
    """(6) Ids with '/' were created and then unreachable; the grammar now refuses what routes cannot reach."""
    url, *_ = service
    for id in REACHABLE_IDS:
        status, item = http_call(url + "/items", "POST", {"id": id, "image_b64": base64.b64encode(photo()).decode(),
                                                         "label": "x"}, KEY)
        assert status == 201 and item["id"] == id, (id, item)
        path = url + "/items/" + quote(id, safe="/")
        assert http_call(path) == (200, item), id
        assert http_call(path + "/image")[0] == 200, id
        status, changed = http_call(path, "PUT", {"label": "changed"}, KEY)
        assert status == 200 and changed["label"] == "changed", (id, changed)
        assert item["image_url"] == f"/items/{quote(id, safe='/')}/image"
        assert http_call(path, "DELETE", headers=KEY) == (200, {"deleted": id}), id
        assert http_call(path)[0] == 404, id


@pytest.mark.parametrize("id", REFUSED_IDS)
def test_ids_outside_the_grammar_are_refused_at_creation(service, id):
    url, *_ = service
    status, answer = http_call(url + "/items", "POST", {"id": id, "image_b64": base64.b64encode(photo()).decode()},
                               KEY)
    assert status == 422 and "id" in answer["error"], (id, status, answer)


def test_unknown_fields_on_searches_are_422(service):
    """(7) /search and /search/text answered 200 to unknown fields, even a 9 MB one."""
    url, _, records, _ = service
    image = base64.b64encode(open(records[0].path, "rb").read()).decode()
    for path, body in [("/search", {"image_b64": image, "colour": "red"}), ("/search/text", {"text": "dress", "x": 1}),
                       ("/search", {"image_b64": image, "pad": "a" * 9_000_000})]:
        status, answer = http_call(url + path, "POST", body)
        assert status == 422 and "Unknown field" in answer["error"], (path, status)
    body, kind = multipart_body({"colour": "red"}, open(records[0].path, "rb").read())
    assert http_call(url + "/search", "POST", body, content_type=kind)[0] == 422


def test_a_client_that_leaves_mid_upload_is_499_not_500(service, capfd):
    """(8) 20 stalled uploads were 20 logged errors and 20 "500"s in /metrics."""
    url, *_ = service
    address = urlparse(url)
    for _ in range(20):
        with socket.create_connection((address.hostname, address.port)) as sock:
            sock.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                         b"Content-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"image\"; "
                         b"filename=\"a.jpg\"\r\n\r\n\xff\xd8\xff")
            time.sleep(0.02)
    time.sleep(0.5)
    metrics = http_call(url + "/metrics")[1]
    lines = [line for line in metrics.splitlines() if line.startswith('visnet_requests_total{method="POST",route="/search"')]
    assert not any('status="500"' in line for line in lines), lines
    assert any('status="499"' in line for line in lines), lines
    assert "Traceback" not in capfd.readouterr().err


def test_an_index_that_is_a_file_is_refused_at_start(gallery_files, tmp_path, capsys):
    """(10) The service started empty and --check passed; the first write was a 500."""
    from serving import api

    model_path, *_ = gallery_files
    regular = tmp_path / "index"
    regular.write_text("not a gallery")
    assert api.main(["--model", model_path, "--index", str(regular), "--check"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_a_png_with_a_bad_header_checksum_is_422_damaged(service):
    """(12) It was 415 "not an image"."""
    url, *_ = service
    body, kind = multipart_body({}, bad_crc_png(), "x.png")
    status, answer = http_call(url + "/search", "POST", body, content_type=kind)
    assert status == 422 and "damaged PNG" in answer["error"]


def test_a_gallery_with_a_non_finite_row_is_refused_at_start(gallery_files, tmp_path, capsys):
    """(13) A NaN row with a recomputed checksum was served."""
    from serving import api
    from visnet.index import storage

    model_path, index, *_ = gallery_files
    copy = tmp_path / "index"
    shutil.copytree(index, copy)
    manifest = json.loads((copy / storage.MANIFEST).read_text())
    data = copy / manifest["data"] if isinstance(manifest.get("data"), str) else copy
    vectors_path = next(p for p in data.rglob("vectors.npy"))
    vectors = np.load(vectors_path)
    vectors[1] = np.nan
    np.save(vectors_path, vectors)
    text = (copy / storage.MANIFEST).read_text()
    for name, digest in list(_checksums(manifest)):
        if name.endswith("vectors.npy"):
            text = text.replace(digest, storage.sha256(str(vectors_path)))
    (copy / storage.MANIFEST).write_text(text)
    assert api.main(["--model", model_path, "--index", str(copy), "--check"]) == 2
    assert "NaN" in capsys.readouterr().err


def _checksums(value, key=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _checksums(v, k if isinstance(v, str) else key)
            if isinstance(v, dict) and "sha256" in v:
                yield k, v["sha256"]
    elif isinstance(value, list):
        for v in value:
            yield from _checksums(v, key)


def test_answers_carry_ids_and_urls_never_server_paths(service):
    """(14) Results exposed the server's absolute file paths in `image`."""
    url, _, records, _ = service
    body, kind = multipart_body({}, open(records[0].path, "rb").read())
    status, found = http_call(url + "/search?k=5", "POST", body, content_type=kind)
    assert status == 200
    for answer in [*found["results"], http_call(url + "/items/" + quote(records[0].id, safe="/"))[1]]:
        assert "image" not in answer and answer["image_url"].startswith("/items/")
        assert os.path.dirname(records[0].path) not in json.dumps(answer)


def test_item_text_is_bounded_and_a_failed_add_leaves_no_file(service):
    """(15) 1 MB of text was stored; an add the gallery refused left its photo in uploads/."""
    url, _, _, index = service
    image = base64.b64encode(photo(colour=(1, 99, 200))).decode()
    status, answer = http_call(url + "/items", "POST", {"id": "long", "image_b64": image, "text": "a" * 1_000_000}, KEY)
    assert status == 422 and "at most 5,000 characters" in answer["error"]
    uploads = os.path.join(index, "uploads")
    before = sorted(os.listdir(uploads)) if os.path.isdir(uploads) else []
    body = b'{"id": "surrogate", "image_b64": "%s", "label": "\\ud800"}' % image.encode()
    status, answer = http_call(url + "/items", "POST", body, KEY, "application/json")
    assert status == 422, answer
    assert (sorted(os.listdir(uploads)) if os.path.isdir(uploads) else []) == before
    assert http_call(url + "/items/surrogate")[0] == 404


def test_the_pixel_limit_message_quotes_the_services_limit(service, tmp_path):
    """(16) The 413 quoted Pillow's "178956970 pixels" instead of --max-pixels."""
    url, *_ = service
    body, kind = multipart_body({}, open(write_png_bomb(tmp_path / "b.png"), "rb").read(), "b.png")
    status, answer = http_call(url + "/search", "POST", body, content_type=kind)
    assert status == 413 and "the limit is 4,000,000" in answer["error"] and "178956970" not in answer["error"]


def test_an_image_path_that_is_not_a_photo_is_never_served(gallery_files, tmp_path):
    """A catalogue naming a non-image file (e.g. /etc/passwd) does not make the service send it."""
    from serving.api import ApiSettings, create_app
    from visnet.index import Gallery

    model_path, index, records, model = gallery_files
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    gallery = Gallery.load(index)
    gallery.update(records[0].id, image=str(secret))
    app = create_app(ApiSettings(model=model_path, index=str(tmp_path / "ix"), batch_size=1), predictor=model,
                     gallery=gallery)
    url, stop = serve_in_thread(app)
    try:
        status, answer = http_call(url + "/items/" + quote(records[0].id, safe="/") + "/image")
        assert status == 404 and "password" not in json.dumps(answer)
    finally:
        stop()


# Large images: decoded once, at reduced scale, within a budget -------------------------------
def test_a_large_jpeg_is_decoded_at_reduced_scale_and_embeds_like_the_full_decode(gallery_files):
    from serving.uploads import prepare, read_header

    *_, model = gallery_files
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (30, 40, 3)).astype(np.uint8)
    big = Image.fromarray(small).resize((4000, 3000), Image.Resampling.BICUBIC)
    data = encoded(big, "JPEG", quality=92)
    header = read_header(data, 40_000_000)
    target = (int(model.metadata["image_spec"]["height"]), int(model.metadata["image_spec"]["width"]))
    assert header.cost(target) < header.pixels / 8  # DCT scaling: 1/8 per side, plus the entropy decoding
    shrunk = prepare(header, target)
    assert Image.open(io.BytesIO(shrunk)).size < (1000, 1000)
    full, _ = model.embed([data])
    fast, valid = model.embed([shrunk])
    assert valid.all() and float(full[0] @ fast[0]) > 0.99


def test_the_large_image_lane_refuses_past_its_budget_with_503_and_retry_after(gallery_files, tmp_path):
    from serving.api import ApiSettings, create_app

    model_path, index, _, model = gallery_files
    app = create_app(ApiSettings(model=model_path, index=index, batch_size=1, large_image_pixels=10_000,
                                 large_image_cpu=0.01), predictor=model)
    app.service.large_images.burst = app.service.large_images._tokens = 0.001
    url, stop = serve_in_thread(app)
    ramp = np.add.outer(np.arange(2000) % 251, np.arange(2000) % 241).astype(np.uint8)
    body, kind = multipart_body({}, encoded(Image.fromarray(ramp), "PNG"), "big.png")
    try:
        answers = []
        for _ in range(4):
            connection = http.client.HTTPConnection(urlparse(url).hostname, urlparse(url).port, timeout=60)
            connection.request("POST", "/search?k=3", body=body, headers={"Content-Type": kind})
            response = connection.getresponse()
            answers.append((response.status, response.getheader("Retry-After"), json.loads(response.read())))
            connection.close()
        assert answers[0][0] == 200
        refused = [a for a in answers if a[0] == 503]
        assert refused and all(int(a[1]) >= 1 and "budget for large images" in a[2]["error"] for a in refused)
        small, kind = multipart_body({}, photo())
        assert http_call(url + "/search?k=3", "POST", small, content_type=kind)[0] == 200  # small ones still flow
        assert 'visnet_large_images_refused' in http_call(url + "/metrics")[1]
    finally:
        stop()


def test_the_cost_lane_runs_one_at_a_time_within_its_budget():
    from serving.budget import Busy, CostLane

    lane = CostLane(share=0.5, burst=0.05, max_waiting=0, process=False)

    def burn(seconds):
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass
        return threading.current_thread().name

    assert lane.run(burn, 0.1).startswith("large-images")
    with pytest.raises(Busy) as busy:
        lane.run(burn, 0.01)
    assert busy.value.retry_after > 0.05  # the 0.1 s over a 0.05 s burst, refilled at 0.5 per second
    time.sleep(busy.value.retry_after + 0.05)
    assert lane.run(burn, 0.01)
    assert lane.ran == 2 and lane.refused == 1 and lane.cpu_seconds >= 0.1
    lane.close()


def test_the_lane_decodes_in_a_worker_process_and_replaces_one_that_dies():
    from serving.budget import CostLane, LaneFailed
    from serving.uploads import UploadError, decode_for_model

    lane = CostLane(share=1.0, burst=5.0)
    try:
        big = encoded(Image.new("RGB", (3000, 2000), (9, 9, 9)), "PNG")
        small = lane.run(decode_for_model, big, 40_000_000, (64, 48))
        assert Image.open(io.BytesIO(small)).size == (192, 128)  # each side at least twice the input, aspect kept
        with pytest.raises(UploadError) as damaged:
            lane.run(decode_for_model, big[: len(big) // 2], 40_000_000, (64, 48))
        assert damaged.value.status == 422
        with pytest.raises(LaneFailed):
            lane.run(os._exit, 1)
        assert lane.run(decode_for_model, big, 40_000_000, (64, 48)) == small  # a new worker took over
        assert lane.failed == 1 and lane.ran == 2
    finally:
        lane.close()


# The real service, attacked ------------------------------------------------------------------
@pytest.fixture(scope="module")
def live(gallery_files, tmp_path_factory):
    """`python -m serving.api` in its own process on a copy of the gallery: (base URL, process, records)."""
    model_path, index, records, _ = gallery_files
    copy = str(tmp_path_factory.mktemp("hostile") / "index")
    shutil.copytree(index, copy)
    process, url = start_service(model_path, copy)
    yield url, process, records
    process.kill()
    process.wait(timeout=30)


def start_service(model_path: str, index: str, *extra: str):
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "VISNET_API_KEY": API_KEY}
    process = subprocess.Popen([sys.executable, "-m", "serving.api", "--model", model_path, "--index", index,
                                "--port", str(port), "--max-pixels", "40000000", "--batch-size", "4", *extra],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"the service stopped: {process.stderr.read()}")
        try:
            if http_call(url + "/healthz", timeout=5)[0] == 200:
                return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the service did not start")


def hostile_corpus(records) -> list[tuple[str, str, str, bytes | None, str | None, dict, tuple]]:
    """(kind, method, path, body, content type, headers, statuses it may get): at least 40 kinds of attack."""
    good = open(records[0].path, "rb").read()
    b64 = base64.b64encode(good).decode()
    item = quote(records[0].id, safe="/")
    out = []

    def upload(kind, data, statuses, filename="x.jpg", path="/search"):
        body, content = multipart_body({}, data, filename)
        out.append((kind, "POST", path, body, content, {}, statuses))

    def js(kind, body, statuses, path="/search", headers=None, method="POST"):
        out.append((kind, method, path, body if isinstance(body, bytes) else json.dumps(body).encode(),
                    "application/json", headers or {}, statuses))

    grey = Image.new("L", (4, 4), 7)
    upload("empty upload", b"", (400,))
    upload("text named .jpg", b"hello, I am not a photo", (415,))
    upload("html polyglot", b"<html><script>alert(1)</script></html>", (415,))
    upload("truncated jpeg", good[: len(good) // 2], (422,))
    upload("jpeg header only", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", (422,))
    upload("truncated png", encoded(grey, "PNG")[:30], (422,))
    upload("png bad IHDR crc", bad_crc_png(), (422,))
    upload("png bomb header", _png_header(60000, 60000), (413,))
    upload("gif bomb header", b"GIF89a" + (65535).to_bytes(2, "little") * 2 + b"\x00" * 8 + b";", (413, 422))
    upload("bmp huge declared", b"BM" + b"\x00" * 16 + (50000).to_bytes(4, "little") * 2 + b"\x00" * 30, (413, 422))
    upload("tiff garbage", b"II*\x00" + os.urandom(200), (422,))
    upload("webp garbage", b"RIFF\x10\x00\x00\x00WEBPVP8 " + os.urandom(40), (422,))
    upload("zero-length png IDAT", encoded(grey, "PNG").replace(b"IDAT", b"IDAx"), (422,))
    upload("random bytes", os.urandom(5000), (415,))
    upload("jpeg with trailing garbage", good + os.urandom(300), (200,))
    body, content = multipart_body({}, None)
    out.append(("a form without a photo", "POST", "/search", body, content, {}, (422,)))
    body, content = multipart_body({"k": "1"}, good)
    out.append(("file in the wrong field", "POST", "/search", body.replace(b'name="image"', b'name="photo"'), content,
                {}, (422,)))
    out.append(("three files", "POST", "/search", _files(good, 3), "multipart/form-data; boundary=zz", {}, (400,)))
    out.append(("multipart without boundary", "POST", "/search", b"abc", "multipart/form-data", {}, (400,)))
    out.append(("multipart, 1000 fields", "POST", "/search", _fields(1000), "multipart/form-data; boundary=zz", {},
                (400,)))
    js("JSON array body", [1, 2], (422,))
    js("JSON string body", "x", (422,))
    js("JSON null body", b"null", (422,))
    js("malformed JSON", b'{"image_b64": ', (400,))
    js("non-UTF-8 JSON", b'{"image_b64": "\xff\xfe"}', (400,))
    js("deep JSON", b"[" * 200_000 + b"]" * 200_000, (400,))
    js("deep JSON in a field", b'{"image_b64": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", (400, 422))
    js("NaN literal k", b'{"image_b64": "%s", "k": NaN}' % b64.encode(), (422,))
    js("Infinity k", b'{"image_b64": "%s", "k": Infinity}' % b64.encode(), (422,))
    js("boolean k", {"image_b64": b64, "k": True}, (422,))
    js("fractional k", {"image_b64": b64, "k": 3.7}, (422,))
    js("huge k", {"image_b64": b64, "k": 10**30}, (422,))
    js("negative k", {"image_b64": b64, "k": -1}, (422,))
    js("image_b64 a number", {"image_b64": 5}, (422,))
    js("image_b64 a list", {"image_b64": [b64]}, (422,))
    js("invalid base64", {"image_b64": "%%%%"}, (400,))
    js("data URI of text", {"image_b64": "data:image/png;base64," + base64.b64encode(b"text").decode()}, (415,))
    js("unknown field", {"image_b64": b64, "admin": True}, (422,))
    js("text search, text a list", {"text": ["dress"]}, (422,), path="/search/text")
    js("text search, 1 MB text", {"text": "dress " * 200_000}, (413, 422), path="/search/text")
    js("text search with an image", {"text": "dress", "image_b64": b64}, (422,), path="/search/text")
    js("write without a key", {"id": "evil", "image_b64": b64}, (401,), path="/items")
    js("write with a wrong key", {"id": "evil", "image_b64": b64}, (403,), path="/items", headers={"X-API-Key": "no"})
    for kind, id in [("id with ..", "../../etc/passwd"), ("id with NUL", "a\x00b"), ("id of 10,000 characters",
                     "x" * 10_000), ("id a number", 7), ("id ending in /image", "a/image"), ("id a control char",
                     "a\x07b")]:
        js(kind, {"id": id, "image_b64": b64}, (422,), path="/items", headers=KEY)
    js("nested labels", {"id": "n", "image_b64": b64, "labels": {"a": [1, {"b": 2}]}}, (422,), path="/items",
       headers=KEY)
    js("labels with 10,000 keys", {"id": "n", "image_b64": b64, "labels": {str(i): i for i in range(10_000)}},
       (422,), path="/items", headers=KEY)
    js("text of 1 MB on an item", {"id": "n", "image_b64": b64, "text": "a" * 1_000_000}, (422,), path="/items",
       headers=KEY)
    js("label a number", {"id": "n", "image_b64": b64, "label": 5}, (422,), path="/items", headers=KEY)
    js("PUT with another id", {"id": "other"}, (422,), path="/items/" + item, headers=KEY, method="PUT")
    js("PUT of nothing", {}, (422,), path="/items/" + item, headers=KEY, method="PUT")
    for kind, path in [("traversal in a path", "/items/..%2F..%2Fetc%2Fpasswd"), ("dot id", "/items/%2e"),
                       ("NUL in a path", "/items/%00"), ("unknown item image", "/items/nope/image"),
                       ("unknown route", "/admin")]:
        out.append((kind, "GET", path, None, None, {}, (404, 422)))
    out.append(("PATCH an item", "PATCH", "/items/" + item, b"{}", "application/json", KEY, (405,)))
    out.append(("wrong content type", "POST", "/search", b"<xml/>", "text/xml", {}, (415,)))
    out.append(("no content type", "POST", "/search", b"abc", None, {}, (415,)))
    out.append(("body over the limit", "POST", "/search", b"\xff" * (10 * 1024 * 1024 + 10), "application/json", {},
                (413,)))
    return out


def _png_header(width: int, height: int) -> bytes:
    ihdr = b"IHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    return (b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + ihdr + zlib.crc32(ihdr).to_bytes(4, "big")
            + b"\x00\x00\x00\x00IEND\xaeB`\x82")


def _files(data: bytes, count: int) -> bytes:
    parts = [b'--zz\r\nContent-Disposition: form-data; name="image"; filename="%d.jpg"\r\n\r\n' % i + data + b"\r\n"
             for i in range(count)]
    return b"".join(parts) + b"--zz--\r\n"


def _fields(count: int) -> bytes:
    return b"".join(b'--zz\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i for i in range(count)) + \
        b"--zz--\r\n"


def _children(pid: int) -> list[int]:
    """The process's children (Linux /proc); [] where that cannot be read."""
    try:
        return [int(child) for child in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


def _still_running(pids: list[int], seconds: float) -> list[int]:
    """Those of `pids` still running (neither gone nor zombies) after waiting up to `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        running = []
        for pid in pids:
            try:
                state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                running.append(pid)
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(0.2)


def _vm(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as handle:
        return next(int(line.split()[1]) / 1024 for line in handle if line.startswith(field))


def test_the_hostile_corpus_gets_documented_4xx_and_the_service_keeps_serving_in_bounded_memory(live):
    url, process, records = live
    corpus = hostile_corpus(records)
    assert len({kind for kind, *_ in corpus}) >= 40
    address = urlparse(url)
    wrong = []
    for kind, method, path, body, content_type, headers, statuses in corpus:
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers={**headers, **({"Content-Type": content_type}
                                                                               if content_type else {})})
            response = connection.getresponse()
            status, raw = response.status, response.read()
        except (BrokenPipeError, ConnectionResetError):
            response = connection.getresponse()
            status, raw = response.status, response.read()
        finally:
            connection.close()
        try:
            error = json.loads(raw).get("error") if status >= 400 else "ok"
        except ValueError:
            error = None
        if status not in statuses or not error:
            wrong.append((kind, status, raw[:200]))
    assert not wrong, wrong
    assert process.poll() is None
    image = base64.b64encode(open(records[0].path, "rb").read()).decode()
    status, found = http_call(url + "/search", "POST", {"image_b64": image, "k": 3})
    assert status == 200 and found["results"][0]["id"] == records[0].id
    peak = _vm(process.pid, "VmHWM")
    assert peak < RSS_LIMIT_MB, f"peak RSS {peak:.0f} MB"
    metrics = http_call(url + "/metrics")[1]
    assert 'status="500"' not in metrics


@pytest.mark.parametrize("backend", ["folder", "milvus"])
def test_kill_9_during_writes_loses_no_acknowledged_write(gallery_files, tmp_path, backend):
    """Writes go on from two clients while the service is killed; every 201 it sent is in the saved gallery
    (a folder gallery, or vectors in Milvus Lite with the catalogue beside them)."""
    from visnet.index import Gallery

    model_path, index, _, _ = gallery_files
    copy = str(tmp_path / "index")
    if backend == "folder":
        shutil.copytree(index, copy)
        process, url = start_service(model_path, copy)
    else:
        process, url = start_service(model_path, copy, "--backend", "milvus")
    acknowledged, stop = [], threading.Event()

    def writer(prefix):
        for i in range(10_000):
            if stop.is_set():
                return
            id = f"{prefix}-{i}"
            try:
                status, _ = http_call(url + "/items", "POST", {"id": id, "label": prefix, "image_b64":
                                                               base64.b64encode(photo(colour=(i % 250, 3, 9))).decode()},
                                      KEY, timeout=10)
            except OSError:
                return
            if status == 201:
                acknowledged.append(id)

    threads = [threading.Thread(target=writer, args=(p,)) for p in ("a", "b")]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    children = _children(process.pid)
    assert children  # the lane's worker starts with the service
    process.kill()
    process.wait(timeout=30)
    # The large-image lane's worker (and its resource tracker) exit with the killed service.
    assert not _still_running(children, seconds=15), f"orphaned after kill -9: {_still_running(children, 0)}"
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(acknowledged) >= 12
    gallery = Gallery.load(copy)
    missing = [id for id in acknowledged if id not in gallery]
    assert not missing, missing
    assert type(gallery.index).name == ("milvus" if backend == "milvus" else "brute")
