"""SavedModel export for TF Serving: signatures, in-graph preprocessing, bad strings in a batch, files beside it."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from helpers import write_image, write_png_bomb, write_truncated_jpeg


def _encoded(tmp_path):
    """Good images of several sizes and kinds, as bytes."""
    paths = [
        write_image(tmp_path / "a.jpg", size=(90, 70), seed=1, fmt="JPEG"),
        write_image(tmp_path / "b.png", size=(40, 120), seed=2, mode="RGBA", fmt="PNG"),
        write_image(tmp_path / "c.png", size=(64, 48), seed=3, mode="L", fmt="PNG"),
        write_image(tmp_path / "d.gif", size=(30, 30), seed=4, fmt="GIF"),
    ]
    return [open(p, "rb").read() for p in paths]


@pytest.fixture(scope="module")
def siamese_export(siamese_run, tmp_path_factory):
    from visnet.exporting import export_run

    out = str(tmp_path_factory.mktemp("models") / "shop")
    return siamese_run, export_run(siamese_run, out)


def test_export_writes_tf_servings_layout_and_files(siamese_export):
    from tensorflow_serving.apis import prediction_log_pb2

    from visnet.exporting import read_metadata

    _, target = siamese_export
    base = os.path.dirname(target)
    assert os.path.basename(target) == "1"
    assert os.path.exists(os.path.join(target, "saved_model.pb"))
    assert not [n for n in os.listdir(base) if n.startswith(".")]  # the staging folder is gone
    config = open(os.path.join(base, "models.config")).read()
    assert 'name: "shop"' in config and f'base_path: "{base}"' in config and 'model_platform: "tensorflow"' in config
    assert "max_batch_size { value: 32 }" in open(os.path.join(base, "batching_parameters.txt")).read()
    records = list(tf.data.TFRecordDataset(os.path.join(target, "assets.extra", "tf_serving_warmup_requests")))
    assert len(records) == 1
    log = prediction_log_pb2.PredictionLog.FromString(records[0].numpy())
    request = log.predict_log.request
    assert request.model_spec.name == "shop" and request.model_spec.signature_name == "serving_default"
    assert len(tf.make_ndarray(request.inputs["image_bytes"])) == 2
    metadata = read_metadata(target)
    assert metadata["arch"] == "siamese" and metadata["embedding_dim"] == 16 and metadata["version"] == 1
    assert metadata["signatures"] == ["serving_default"]


def test_served_embeddings_equal_the_keras_model_on_decoded_images(siamese_export, tmp_path):
    from visnet.data.pipeline import preprocess_bytes

    run, target = siamese_export
    images = _encoded(tmp_path)
    served = tf.saved_model.load(target).signatures["serving_default"](image_bytes=tf.constant(images))
    x = tf.stack([preprocess_bytes(tf.constant(data), run.image_spec) for data in images])
    expected = run.model().predict(x, verbose=0)
    np.testing.assert_allclose(served["embedding"].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(served["embedding"].numpy(), axis=1), 1.0, atol=1e-5)
    assert served["valid"].numpy().all()


def test_a_bad_string_is_flagged_and_does_not_poison_its_batch(siamese_export, tmp_path):
    _, target = siamese_export
    good = _encoded(tmp_path)
    truncated_png = good[1][: len(good[1]) // 2]
    bad = [
        b"",
        b"this is not an image",
        open(write_truncated_jpeg(tmp_path / "cut.jpg"), "rb").read(),
        truncated_png,
        open(write_png_bomb(tmp_path / "bomb.png"), "rb").read(),  # 20000 x 20000: over max_pixels
        b"\xff\xd8\xff",  # a JPEG signature and nothing else
    ]
    batch = [good[0], *bad, good[2]]
    signature = tf.saved_model.load(target).signatures["serving_default"]
    out = signature(image_bytes=tf.constant(batch))
    valid = out["valid"].numpy()
    assert valid.tolist() == [True] + [False] * len(bad) + [True]
    np.testing.assert_array_equal(out["embedding"].numpy()[1:-1], 0.0)
    clean = signature(image_bytes=tf.constant([good[0], good[2]]))["embedding"].numpy()
    np.testing.assert_allclose(out["embedding"].numpy()[[0, -1]], clean, atol=1e-6)


def test_versions_count_up_and_an_existing_version_is_kept(siamese_run, tmp_path, capsys):
    from visnet import export

    out = str(tmp_path / "models" / "shop")
    assert export.main(["--run", siamese_run.path, "--out", out]) == 0
    assert export.main(["--run", siamese_run.path, "--out", out]) == 0
    assert sorted(os.listdir(out)) == ["1", "2", "batching_parameters.txt", "models.config"]
    assert "tensorflow_model_server" in capsys.readouterr().out
    assert export.main(["--run", siamese_run.path, "--out", out, "--version", "2"]) == 2
    assert "exists" in capsys.readouterr().err
    assert export.main(["--run", siamese_run.path, "--out", out, "--version", "2", "--overwrite"]) == 0
    assert export.main(["--run", str(tmp_path / "nope"), "--out", out]) == 2
    assert "Run directory not found" in capsys.readouterr().err
    assert export.main(["--run", siamese_run.path, "--out", out, "--version", "0"]) == 2
    assert "version must be >= 1" in capsys.readouterr().err


@pytest.mark.slow
def test_a_weak_label_export_tags_and_scores_text_like_the_run(weak_run, catalogue, tmp_path):
    from visnet.data.pipeline import preprocess_bytes
    from visnet.exporting import export_run, read_metadata

    target = export_run(weak_run, str(tmp_path / "words"), which="last", tags_k=3)
    model = tf.saved_model.load(target)
    assert sorted(model.signatures) == ["serving_default", "tags", "text_query"]
    assert read_metadata(target)["tags_k"] == 3
    assert os.path.exists(os.path.join(target, "assets.extra", "vocabulary.json"))
    images = [open(p, "rb").read() for p in sorted(glob.glob(os.path.join(catalogue, "images", "*")))[:4]]
    words = weak_run.word_model("last")
    x = tf.stack([preprocess_bytes(tf.constant(data), weak_run.image_spec) for data in images]).numpy()
    vectors = words.embed(x)
    tags = model.signatures["tags"](image_bytes=tf.constant(images + [b"junk"]))
    expected = words.tag(vectors, k=3)
    assert [[w.decode() for w in row] for row in tags["words"].numpy()[:4]] == [[w for w, _ in row] for row in expected]
    np.testing.assert_allclose(tags["scores"].numpy()[:4], [[s for _, s in row] for row in expected], atol=1e-5)
    assert tags["valid"].numpy().tolist() == [True] * 4 + [False]
    # text_query: q . z is the summed word score that WordModel.text_scores ranks by.
    ids = words.query_ids("striped dress")
    query = model.signatures["text_query"](word_ids=tf.constant([list(ids) + [-1]], tf.int32))["query"].numpy()
    np.testing.assert_allclose(vectors @ query[0],
                               words.text_scores("striped dress", vectors), atol=1e-5)


def test_the_text_query_of_a_pseudo_attention_head_scores_like_the_head():
    from visnet.exporting import word_query
    from visnet.layers import WordScores

    types, dim = 4, 6
    head = WordScores(12, negatives=3, types=types)
    head.build([(None, types * dim), (None,)])
    rng = np.random.default_rng(0)
    sub = rng.normal(size=(5, types, dim))
    z = (sub / np.linalg.norm(sub, axis=-1, keepdims=True)).reshape(5, -1) * types**-0.5  # as build_weakly makes it
    ids = np.array([[3, 7, -1]], np.int32)
    query = word_query(head, tf.constant(ids)).numpy()
    expected = np.asarray(head.score_ids(z.astype("float32"), np.tile([[3, 7]], (5, 1)))).sum(axis=1)
    np.testing.assert_allclose(z @ query[0], expected, atol=1e-5)
