"""`python -m visnet.index build|info`: a dataset embedded through an export into a saved gallery."""

import os

import numpy as np
import pytest
from helpers import write_image, write_text, write_truncated_jpeg


@pytest.fixture(scope="module")
def export(siamese_run, tmp_path_factory):
    from visnet.exporting import export_run

    out = str(tmp_path_factory.mktemp("models") / "shop")
    export_run(siamese_run, out)
    return out


def test_build_indexes_every_readable_image_and_skips_the_rest(export, tmp_path, capsys):
    from visnet.exported import ExportedModel
    from visnet.index import Gallery
    from visnet.index import __main__ as cli

    photos = tmp_path / "photos"
    for label in ("red", "blue"):
        for i in range(3):
            write_image(photos / label / f"{i}.jpg", size=(40, 30), seed=i + (10 if label == "red" else 20),
                        fmt="JPEG")
    write_truncated_jpeg(photos / "red" / "cut.jpg")
    write_text(photos / "blue" / "notes.jpg")
    out = str(tmp_path / "index")
    code = cli.main(["build", "--model", export, "--data", f"folder:{photos}", "--out", out, "--backend",
                     "balltree", "--backend-option", "leaf_size=4", "--batch-size", "4", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "indexed 6 images (1 skipped)" in captured.out and "into a balltree index" in captured.out and "cut.jpg: not a usable image" in captured.err
    gallery = Gallery.load(out, expected_model={"name": "shop", "version": "1"})
    assert len(gallery) == 6 and gallery.index.get_config()["leaf_size"] == 4
    model = ExportedModel(export)
    query = open(photos / "red" / "1.jpg", "rb").read()
    vectors, _ = model.embed([query])
    best = gallery.search(vectors[0], k=1)[0]
    assert os.path.isabs(best["image"]) and best["image"].endswith(os.path.join("red", "1.jpg"))
    assert best["label"] == "red"
    assert best["score"] == pytest.approx(1.0, abs=1e-5)
    assert cli.main(["info", "--index", out]) == 0
    assert "6 items" in capsys.readouterr().out


def test_build_into_milvus_then_serve_and_change_it_end_to_end(export, tmp_path):
    """`visnet.index build --backend milvus` fills a Milvus Lite collection; the search API serves it,
    writes reach Milvus and survive a reload; a non-empty collection is not built into twice."""
    from helpers import http_call, multipart_body, serve_in_thread

    from serving.api import ApiSettings, create_app
    from visnet.index import Gallery, MilvusIndex
    from visnet.index import __main__ as cli

    photos = tmp_path / "photos"
    for label in ("red", "blue"):
        for i in range(3):
            write_image(photos / label / f"{i}.jpg", size=(40, 30), seed=i + (10 if label == "red" else 20),
                        fmt="JPEG")
    out = str(tmp_path / "index")
    args = ["build", "--model", export, "--data", f"folder:{photos}", "--out", out, "--backend", "milvus",
            "--backend-option", "index_type=FLAT", "--batch-size", "4", "--no-progress"]
    assert cli.main(args) == 0  # (no capsys: Milvus Lite's in-process server logs from its own threads)
    gallery = Gallery.load(out, expected_model={"name": "shop", "version": "1"})
    assert isinstance(gallery.index, MilvusIndex) and len(gallery) == 6
    assert gallery.index.uri == os.path.join(out, "milvus.db") and gallery.index.model()["name"] == "shop"
    assert cli.main(args) == 2  # the collection already holds 6 vectors
    assert len(Gallery.load(out)) == 6

    app = create_app(ApiSettings(model=export, index=out, api_key="k", batch_size=1))
    url, stop = serve_in_thread(app)
    try:
        query = open(photos / "red" / "1.jpg", "rb").read()
        body, kind = multipart_body({}, query)
        status, found = http_call(url + "/search?k=2", "POST", body, content_type=kind)
        assert status == 200 and found["results"][0]["id"] == "red/1.jpg", found
        body, kind = multipart_body({"id": "new/1", "label": "green"}, query)
        assert http_call(url + "/items", "POST", body, {"X-API-Key": "k"}, kind)[0] == 201
        assert http_call(url + "/items/red/2.jpg", "DELETE", headers={"X-API-Key": "k"})[0] == 200
    finally:
        stop()
    reloaded = Gallery.load(out)
    assert len(reloaded) == 6 and "new/1" in reloaded and "red/2.jpg" not in reloaded
    assert "new/1" in MilvusIndex(uri=os.path.join(out, "milvus.db"))  # in the engine itself


def test_build_names_a_bad_backend_or_model_before_reading(export, tmp_path, capsys):
    from visnet.index import __main__ as cli

    base = ["--data", str(tmp_path), "--out", str(tmp_path / "index"), "--no-progress"]
    assert cli.main(["build", "--model", export, "--backend", "nope", *base]) == 2
    assert "Unknown index: 'nope'" in capsys.readouterr().err
    assert cli.main(["build", "--model", str(tmp_path / "none"), *base]) == 2
    assert "Model base path not found" in capsys.readouterr().err
    assert cli.main(["info", "--index", str(tmp_path / "none")]) == 2


def test_build_gallery_refuses_an_empty_dataset_or_all_bad_images(tmp_path):
    from visnet.data.records import Record
    from visnet.index.build import build_gallery

    with pytest.raises(ValueError, match="nothing to index"):
        build_gallery(lambda data: None, [])
    records = [Record(path=str(tmp_path / "missing.jpg"), label="x")]
    with pytest.raises(ValueError, match="None of the 1 images"):
        build_gallery(lambda data: (np.zeros((len(data), 2)), np.zeros(len(data), bool)), records, progress=False)


def test_auto_chooses_exact_search_for_small_galleries_and_hnsw_for_large():
    from visnet.index import AUTO_THRESHOLD, choose_backend

    assert choose_backend(10) == "brute" and choose_backend(AUTO_THRESHOLD - 1) == "brute"
    assert choose_backend(AUTO_THRESHOLD) == "faiss-hnsw"
