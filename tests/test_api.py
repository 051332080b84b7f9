"""The search service over real HTTP (uvicorn on loopback): search, text search, writes, limits, bad input, the page."""

import base64
import json
import os
import shutil
import time

import numpy as np
import pytest
from helpers import free_port as _free_port
from helpers import http_call as call
from helpers import multipart_body as multipart
from helpers import write_image, write_png_bomb, write_text, write_truncated_jpeg

KEY = "test-key"


def test_search_by_photo_finds_the_photo_itself_first(service):
    url, model, records, _ = service
    photo = open(records[4].path, "rb").read()
    body, kind = multipart({}, photo)
    status, result = call(url + "/search?k=5", "POST", body, content_type=kind)
    assert status == 200 and len(result["results"]) == 5
    assert result["results"][0]["id"] == records[4].id and result["results"][0]["score"] == pytest.approx(1, abs=1e-5)
    scores = [r["score"] for r in result["results"]]
    assert scores == sorted(scores, reverse=True)
    # The same through JSON/base64, and the results carry the catalogue fields.
    status, same = call(url + "/search", "POST", {"image_b64": base64.b64encode(photo).decode(), "k": 5})
    assert status == 200 and [r["id"] for r in same["results"]] == [r["id"] for r in result["results"]]
    first = same["results"][0]
    assert first["label"] == records[4].label and first["text"] == records[4].text
    status, image = call(url + first["image_url"])
    assert status == 200 and len(image) > 0


def test_text_search_ranks_by_the_summed_word_scores(service):
    url, model, records, _ = service
    status, result = call(url + "/search/text", "POST", {"text": "Striped DRESS!", "k": 30})
    assert status == 200 and result["words"] == ["dress", "striped"]
    vocabulary = model.vocabulary()
    query = model.text_query([list(vocabulary.bag("striped dress"))])[0]
    vectors, _ = model.embed([open(r.path, "rb").read() for r in records])
    expected = vectors @ query
    by_id = {r.id: e for r, e in zip(records, expected)}
    got = [(r["id"], r["score"]) for r in result["results"]]
    np.testing.assert_allclose([s for _, s in got], [by_id[i] for i, _ in got], atol=1e-4)
    np.testing.assert_allclose([s for _, s in got], np.sort(expected)[::-1][: len(got)], atol=1e-4)
    status, error = call(url + "/search/text", "POST", {"text": "qwertyuiop"})
    assert status == 422 and "qwertyuiop" in error["error"]


@pytest.mark.parametrize("name, make, status, message", [
    ("empty", lambda d: b"", 400, "empty"),
    ("text", lambda d: open(write_text(d / "a.jpg"), "rb").read(), 415, "not an image"),
    ("truncated", lambda d: open(write_truncated_jpeg(d / "t.jpg"), "rb").read(), 422, "damaged JPEG"),
    ("bomb", lambda d: open(write_png_bomb(d / "b.png"), "rb").read(), 413, "pixels"),
])
def test_bad_uploads_are_4xx_with_a_message_and_the_server_keeps_serving(service, tmp_path, name, make, status,
                                                                         message):
    url, _, records, _ = service
    body, kind = multipart({}, make(tmp_path))
    got, error = call(url + "/search", "POST", body, content_type=kind)
    assert got == status and message in error["error"], error
    assert call(url + "/healthz")[0] == 200
    body, kind = multipart({}, open(records[0].path, "rb").read())
    assert call(url + "/search?k=1", "POST", body, content_type=kind)[0] == 200


def test_a_50_mb_upload_is_refused_before_it_is_read(service):
    """The 413 comes from the Content-Length, while the client is still sending (as curl would see it)."""
    import http.client
    from urllib.parse import urlparse

    url, _, _, _ = service
    body, kind = multipart({}, b"\xff\xd8\xff" + os.urandom(50 * 1024 * 1024))
    address = urlparse(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    begin = time.monotonic()
    connection.putrequest("POST", "/search")
    connection.putheader("Content-Type", kind)
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders()
    try:
        for start in range(0, len(body), 1 << 20):
            connection.send(body[start : start + (1 << 20)])
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed: the rest is never read
    response = connection.getresponse()
    error = json.loads(response.read())
    connection.close()
    assert response.status == 413 and "10,485,760 bytes" in error["error"]
    assert time.monotonic() - begin < 30
    assert call(url + "/healthz")[0] == 200


def test_bad_requests_name_what_is_wrong(service):
    url, _, records, _ = service
    photo = base64.b64encode(open(records[0].path, "rb").read()).decode()
    for body, status, message in [
        ({"image_b64": photo, "k": 0}, 422, "k must be between 1 and 100"),
        ({"image_b64": photo, "k": 101}, 422, "k must be between 1 and 100"),
        ({"image_b64": photo, "k": "many"}, 422, "k must be an integer"),
        ({"image_b64": "%%%"}, 400, "not valid base64"),
        ({"k": 3}, 422, "Send the photo"),
    ]:
        got, error = call(url + "/search", "POST", body)
        assert got == status and message in error["error"], (body, error)
    assert call(url + "/search", "POST", b"{", content_type="application/json")[0] == 400
    assert call(url + "/search", "POST", b"x", content_type="text/plain")[0] == 415
    assert call(url + "/search?k=abc", "POST", {"image_b64": photo})[0] == 422
    assert call(url + "/items/nope")[0] == 404
    assert call(url + "/nowhere")[0] == 404


def test_writes_need_the_key_and_change_what_search_finds(service, tmp_path):
    from visnet.index import Gallery

    url, model, records, index = service
    photo = open(write_image(tmp_path / "new.png", size=(80, 60), seed=42, fmt="PNG"), "rb").read()
    body, kind = multipart({"id": "new-1", "label": "scarf", "text": "red wool scarf", "labels": '{"colour": "red"}'},
                           photo, "new.png")
    assert call(url + "/items", "POST", body, content_type=kind)[0] == 401
    assert call(url + "/items", "POST", body, {"X-API-Key": "wrong"}, kind)[0] == 403
    status, item = call(url + "/items", "POST", body, {"X-API-Key": KEY}, kind)
    assert status == 201 and item["label"] == "scarf" and item["labels"] == {"colour": "red"}
    assert call(url + "/items", "POST", body, {"X-API-Key": KEY}, kind)[0] == 409
    search, search_kind = multipart({}, photo)
    status, found = call(url + "/search?k=1", "POST", search, content_type=search_kind)
    assert found["results"][0]["id"] == "new-1"
    assert Gallery.load(index).get("new-1")["label"] == "scarf"  # saved before it was acknowledged
    status, changed = call(url + "/items/new-1", "PUT", {"label": "shawl"}, {"X-API-Key": KEY})
    assert status == 200 and changed["label"] == "shawl" and changed["text"] == "red wool scarf"
    assert call(url + "/items/new-1", "PUT", {"colour": "x"}, {"X-API-Key": KEY})[0] == 422
    assert call(url + "/items/missing", "PUT", {"label": "x"}, {"X-API-Key": KEY})[0] == 404
    assert call(url + "/items/new-1", "DELETE")[0] == 401
    assert call(url + "/items/new-1", "DELETE", headers={"X-API-Key": KEY}) == (200, {"deleted": "new-1"})
    assert call(url + "/items/new-1")[0] == 404
    assert "new-1" not in Gallery.load(index)
    status, found = call(url + "/search?k=1", "POST", search, content_type=search_kind)
    assert found["results"][0]["id"] != "new-1"


def test_health_metrics_and_openapi(service):
    url, _, records, _ = service
    status, health = call(url + "/healthz")
    assert status == 200 and health["text_search"] is True and health["model"] == {"name": "words", "version": "1"}
    status, text = call(url + "/metrics")
    assert status == 200
    assert 'visnet_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert "visnet_request_duration_seconds_bucket" in text and "visnet_index_items " in text
    status, spec = call(url + "/openapi.json")
    assert status == 200 and {"/search", "/search/text", "/items", "/items/{id}", "/healthz"} <= set(spec["paths"])


def test_an_index_of_another_model_version_is_refused(gallery_files, tmp_path):
    from serving.api import ApiSettings, create_app
    from visnet.index import Gallery, ModelMismatchError

    model_path, index, _, model = gallery_files
    other = str(tmp_path / "index")
    Gallery.load(index).save(other, model={"name": "words", "version": "7"})
    with pytest.raises(ModelMismatchError, match="7"):
        create_app(ApiSettings(model=model_path, index=other), predictor=model)


def test_writes_are_refused_without_a_configured_key(gallery_files, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from serving.api import ApiSettings, create_app

    monkeypatch.delenv("VISNET_API_KEY", raising=False)
    model_path, index, _, model = gallery_files
    client = TestClient(create_app(ApiSettings(model=model_path, index=str(tmp_path / "empty")), predictor=model))
    response = client.delete("/items/x", headers={"X-API-Key": "anything"})
    assert response.status_code == 403 and "Writes are disabled" in response.json()["error"]
    assert client.get("/healthz").json()["items"] == 0  # a missing index starts empty


def test_query_expansion_reranks_photo_searches_as_the_gallery_does(gallery_files, catalogue, tmp_path):
    from fastapi.testclient import TestClient

    from serving.api import ApiSettings, create_app
    from visnet.data.readers import load_dataset
    from visnet.index import Gallery
    from visnet.index.expansion import Expansion

    model_path, index, _, model = gallery_files
    live = str(tmp_path / "live")
    shutil.copytree(index, live)
    client = TestClient(create_app(ApiSettings(model=model_path, index=live, batch_size=1,
                                               expansion="qe=2,alpha=1"), predictor=model))
    photo = open(load_dataset(catalogue)[40].path, "rb").read()  # not in the gallery (its first 30 photos)
    body, kind = multipart({}, photo)
    got = client.post("/search?k=8", content=body, headers={"Content-Type": kind}).json()["results"]
    vector = model.embed([photo])[0][0]
    gallery = Gallery.load(index)
    expected = gallery.search(vector, 8, Expansion(qe=2, alpha=1.0))
    assert [r["id"] for r in got] == [r["id"] for r in expected]
    np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in expected], atol=1e-5)
    assert [r["id"] for r in expected] != [r["id"] for r in gallery.search(vector, 8)] or \
        [r["score"] for r in expected] != pytest.approx([r["score"] for r in gallery.search(vector, 8)])
    for bad, message in (("qe=1,dba=3", "expands queries only"), ("qe=x", "qe must be an integer")):
        with pytest.raises(ValueError, match=message):
            ApiSettings(model=model_path, index=live, expansion=bad)


@pytest.mark.slow
def test_the_page_searches_by_photo_and_by_words_in_chromium(service, tmp_path):
    """End to end in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)."""
    from playwright.sync_api import sync_playwright

    url, _, records, _ = service
    photo = tmp_path / "query.jpg"
    shutil.copy(records[7].path, photo)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("VISNET_CHROMIUM", "/usr/bin/chromium"),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('about').textContent.includes('30 products')")
            page.select_option("#k", "6")
            page.set_input_files("#file", str(photo))
            page.wait_for_selector("#results .card")
            cards = page.locator("#results .card")
            assert cards.count() == 6
            assert cards.first.get_attribute("data-id") == records[7].id
            assert cards.first.locator(".label").text_content() == records[7].label
            # The first result's photo loads (waited for: on a loaded machine it arrives after the cards).
            page.wait_for_function("() => { const img = document.querySelector('#results .card img');"
                                   " return img !== null && img.complete && img.naturalWidth > 0; }", timeout=15000)
            assert "6 products" in page.text_content("#status")
            # The words box is shown for a weak-label model.
            assert page.is_visible("#words")
            page.fill("#text", "striped dress")
            page.click("#words button")
            page.wait_for_function("document.getElementById('status').textContent.includes('words: dress, striped')")
            assert page.locator("#results .card").count() == 6
            # A bad file is an error line, and the page keeps working.
            bad = write_text(tmp_path / "notes.jpg")
            page.set_input_files("#file", bad)
            page.wait_for_function("document.getElementById('status').className === 'error'")
            assert "not an image" in page.text_content("#status")
        finally:
            browser.close()


def test_with_a_save_interval_writes_are_saved_together_and_at_shutdown(gallery_files, tmp_path):
    from fastapi.testclient import TestClient

    from serving.api import ApiSettings, create_app
    from visnet.index import Gallery

    model_path, index, records, model = gallery_files
    live = str(tmp_path / "index")
    shutil.copytree(index, live)
    app = create_app(ApiSettings(model=model_path, index=live, api_key=KEY, save_interval=60), predictor=model)
    photo = base64.b64encode(open(records[0].path, "rb").read()).decode()
    with TestClient(app) as client:
        response = client.post("/items", json={"id": "later", "image_b64": photo}, headers={"X-API-Key": KEY})
        assert response.status_code == 201 and client.get("/healthz").json()["unsaved_writes"] is True
        assert "later" not in Gallery.load(live)  # not saved yet
    assert "later" in Gallery.load(live)  # saved at shutdown


def test_embeddings_through_tf_serving_over_grpc(gallery_files):
    """--tf-serving HOST:PORT: the service embeds through PredictionService (here serving.grpc_server)."""
    from fastapi.testclient import TestClient

    from serving.api import ApiSettings, create_app
    from serving.clients import GrpcClient
    from serving.grpc_server import grpc_server

    model_path, index, records, model = gallery_files
    server = grpc_server(model, 0)
    try:
        app = create_app(ApiSettings(model=model_path, index=index, tf_serving=f"127.0.0.1:{server.port}"))
        assert isinstance(app.service.predictor.predictor, GrpcClient)  # behind the batcher
        client = TestClient(app)
        assert client.get("/healthz").json()["embeddings"] == f"tf-serving 127.0.0.1:{server.port}"
        photo = base64.b64encode(open(records[3].path, "rb").read()).decode()
        found = client.post("/search", json={"image_b64": photo, "k": 1}).json()["results"]
        assert found[0]["id"] == records[3].id
        assert client.post("/search/text", json={"text": "dress", "k": 2}).status_code == 200
    finally:
        server.stop(None)


def test_the_check_option_serves_one_search_and_stops(gallery_files, capsys):
    from serving import api

    model_path, index, records, _ = gallery_files
    assert api.main(["--model", model_path, "--index", index, "--port", str(_free_port()), "--check"]) == 0
    out = capsys.readouterr().out
    assert "check passed" in out and "30 items" in out
    assert api.main(["--model", model_path + "-missing", "--index", index]) == 2
    assert "No model version" in capsys.readouterr().err


def test_malformed_requests_are_never_a_500(service):
    url, _, records, _ = service
    key = {"X-API-Key": KEY}
    photo = base64.b64encode(open(records[0].path, "rb").read()).decode()
    cases = [
        ("/search", "POST", b"", "application/json", None),
        ("/search", "POST", b"[1, 2]", "application/json", None),
        ("/search", "POST", b'{"image_b64": 5}', "application/json", None),
        ("/search", "POST", b"--x\r\nnot a form", "multipart/form-data; boundary=x", None),
        ("/search", "POST", b"\xff\xfe", "application/json", None),
        ("/search/text", "POST", b'{"text": 12}', "application/json", None),
        ("/search/text", "POST", b'{"text": "' + b"a" * 5000 + b'"}', "application/json", None),
        ("/search/text", "POST", b'{"text": "dress", "k": -3}', "application/json", None),
        ("/items", "POST", json.dumps({"id": "", "image_b64": photo}).encode(), "application/json", key),
        ("/items", "POST", json.dumps({"id": "x", "image_b64": photo, "label": 5}).encode(), "application/json", key),
        ("/items", "POST", json.dumps({"id": "x", "image_b64": photo, "labels": [1]}).encode(), "application/json",
         key),
        ("/items", "POST", json.dumps({"id": "x"}).encode(), "application/json", key),
        ("/items/" + records[0].id, "PUT", json.dumps({"id": "other"}).encode(), "application/json", key),
        ("/items/" + records[0].id, "PUT", json.dumps({}).encode(), "application/json", key),
        ("/items/" + records[0].id, "PUT", json.dumps({"labels": "{not json"}).encode(), "application/json", key),
        ("/items/%00", "GET", None, None, None),
        ("/items/x/image", "GET", None, None, None),
    ]
    for path, method, body, kind, headers in cases:
        status, answer = call(url + path, method, body, headers, kind)
        assert 400 <= status < 500, (path, body[:60] if body else None, status, answer)
        assert isinstance(answer, dict) and answer.get("error"), (path, answer)
    assert call(url + "/healthz")[0] == 200
