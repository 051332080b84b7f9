"""The ImageNet class embedding beside a run's: the model against NumPy, the run level, the command
lines (evaluate, embed, export) and the benchmark that chooses the share."""

import json

import numpy as np
import pytest
from helpers import check_model, write_image


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _class_reference(pixels: np.ndarray) -> np.ndarray:
    """sqrt(softmax(ImageNet classifier(average-pooled Lite0 features))) in NumPy, pixels in [0, 255]."""
    from visnet.backbones import build_backbone
    from visnet.backbones.efficientnet_lite import imagenet_classifier

    trunk = build_backbone("efficientnet-lite0", pixels.shape[1:], weights="imagenet")
    pooled = np.asarray(trunk.predict(pixels, verbose=0)).mean(axis=(1, 2)).astype(np.float64)
    kernel, bias = imagenet_classifier()
    logits = pooled @ kernel + bias
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.sqrt(p / p.sum(axis=1, keepdims=True))


def _tiny(dim: int = 5, shape=(64, 48, 3)):
    import keras

    inputs = keras.Input(shape)
    x = keras.layers.Dense(dim, kernel_initializer=keras.initializers.GlorotUniform(0), name="dense")(
        keras.layers.GlobalAveragePooling2D()(inputs))
    return keras.Model(inputs, keras.layers.UnitNormalization(name="embedding")(x), name="tiny")


def test_the_class_embedding_is_the_square_root_of_the_imagenet_probabilities():
    from visnet.models.imagenet_classes import class_embedding_model

    pixels = np.random.default_rng(0).uniform(0, 255, (3, 64, 48, 3)).astype("float32")
    model = class_embedding_model((64, 48, 3))
    got = model.predict(pixels, verbose=0)
    assert got.shape == (3, 1000)
    np.testing.assert_allclose(got, _class_reference(pixels), atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert not any(w.trainable for w in model.weights)  # frozen, classifier included
    # A model fed [0, 1] images ("unit") scales them back to pixels first.
    np.testing.assert_allclose(class_embedding_model((64, 48, 3), "unit").predict(pixels / 255.0, verbose=0), got,
                               atol=2e-5)
    with pytest.raises(ValueError, match="normalised as 'caffe' cannot feed it"):
        class_embedding_model((64, 48, 3), "caffe")
    with pytest.raises(ValueError, match="classifier is available offline.*backbone='tiny'"):
        class_embedding_model((64, 48, 3), backbone="tiny", weights=None)


def test_beside_a_run_it_takes_its_share_of_the_squared_distance(tmp_path):
    from visnet.models.imagenet_classes import ImageNetClasses, fuse_arrays, with_imagenet_classes

    pixels = np.random.default_rng(1).uniform(0, 255, (4, 64, 48, 3)).astype("float32")
    learned = _tiny()
    e = learned.predict(pixels, verbose=0)
    model = with_imagenet_classes(learned, ImageNetClasses(0.3), "none")
    got = model.predict(pixels, verbose=0)
    c = _class_reference(pixels)
    np.testing.assert_allclose(got, fuse_arrays(e, c, 0.3), atol=3e-5)
    d = lambda v: ((v[:, None] - v[None]) ** 2).sum(-1)  # noqa: E731
    np.testing.assert_allclose(d(got), 0.7 * d(e) + 0.3 * d(c), atol=1e-4)
    check_model(model, (64, 48, 3), (1005,), tmp_path)  # config round trip and .keras save -> load
    # The classifier may see another size than the run: the photo is resized inside the model.
    resized = with_imagenet_classes(_tiny(), ImageNetClasses(0.5, (32, 32)), "none")
    small = resized.get_layer("imagenet_resize")(pixels).numpy()
    np.testing.assert_allclose(resized.predict(pixels, verbose=0), fuse_arrays(e, _class_reference(small), 0.5),
                               atol=3e-5)


@pytest.mark.parametrize("share", [0, 1, 1.5, -0.1, True, "0.5", None, float("nan")])
def test_a_bad_share_is_named(share):
    from visnet.models.imagenet_classes import ImageNetClasses, fuse_arrays

    with pytest.raises(ValueError, match=r"share must be a number in \(0, 1\). Received: share=") as raised:
        ImageNetClasses(share)
    assert str(raised.value).endswith(f"share={share!r}")
    with pytest.raises(ValueError, match="share must be a number"):
        fuse_arrays(np.ones((1, 2)), np.ones((1, 3)), share)


def test_a_bad_image_size_is_named():
    from visnet.models.imagenet_classes import ImageNetClasses

    assert ImageNetClasses(0.5, [288, 216]).image_size == (288, 216)
    assert ImageNetClasses(0.5, (288, 216)).label() == "imagenet0.5@288x216" and ImageNetClasses(0.25).label() == "imagenet0.25"
    for size in [(16, 16), (288,), (288.0, 216), "288x216"]:
        with pytest.raises(ValueError, match="image_size must be") as raised:
            ImageNetClasses(0.5, size)
        assert str(raised.value).endswith(f"image_size={size!r}")


def test_a_run_and_an_ensemble_embed_with_the_classes(siamese_run, weak_run):
    from visnet.models.imagenet_classes import ImageNetClasses, fuse_arrays
    from visnet.training.runs import Run, RunEnsemble

    run = Run(siamese_run.path)
    images = np.random.default_rng(2).uniform(0, 1, (3, 64, 48, 3)).astype("float32")  # "unit" normalisation
    classes = ImageNetClasses(0.4)
    embedder = run.embedder(imagenet=classes)
    assert embedder.name == "run:siamese+imagenet0.4"
    expected = fuse_arrays(run.embedder()(images), _class_reference(images * 255.0), 0.4)
    np.testing.assert_allclose(embedder(images), expected, atol=3e-5)
    ensemble = RunEnsemble([siamese_run.path, weak_run.path])
    together = ensemble.embedder(imagenet=classes)
    assert together.name == "ensemble:siamese+weakly+imagenet0.4"
    np.testing.assert_allclose(together(images), fuse_arrays(ensemble.embedder()(images),
                                                             _class_reference(images * 255.0), 0.4), atol=3e-5)


def test_evaluate_and_embed_take_the_classes_and_name_bad_flags(siamese_run, catalogue, tmp_path, capsys):
    from visnet import embed, evaluate

    out = str(tmp_path / "evaluate.json")
    common = ["--data", catalogue, "--episodes", "2", "--no-progress"]
    assert evaluate.main([*common, "--run", siamese_run.path, "--imagenet-share", "0.5", "--imagenet-size", "64x64",
                          "--out", out]) == 0
    assert "+imagenet0.5@64x64" in json.load(open(out))["embedder"]["name"]
    assert evaluate.main([*common, "--embedder", "pixels", "--imagenet-share", "0.5"]) == 2
    assert "--imagenet-share applies to --run" in capsys.readouterr().err
    assert evaluate.main([*common, "--run", siamese_run.path, "--imagenet-size", "64x64"]) == 2
    assert "--imagenet-size applies with --imagenet-share. Received: --imagenet-size 64x64 alone" in \
        capsys.readouterr().err
    for bad in ("1.5", "half", "0"):
        with pytest.raises(SystemExit):
            evaluate.main([*common, "--run", siamese_run.path, "--imagenet-share", bad])
        assert f"must be a number in (0, 1). Received: '{bad}'" in capsys.readouterr().err
    vectors = str(tmp_path / "vectors.npz")
    assert embed.main(["--run", siamese_run.path, "--data", catalogue, "--out", vectors, "--no-progress",
                       "--image-size", "80x60", "--imagenet-share", "0.2"]) == 0
    from visnet.data.readers import load_dataset
    from visnet.evaluation.embedding import embed_dataset
    from visnet.models.imagenet_classes import ImageNetClasses
    from visnet.training.runs import Run

    written = np.load(vectors)
    assert written["embeddings"].shape[1] == 16 + 1000
    dataset = load_dataset(catalogue, check="none")
    embedder = Run(siamese_run.path).embedder(image_size=(80, 60), imagenet=ImageNetClasses(0.2))
    assert embedder.name == "run:siamese@80x60+imagenet0.2"
    _, expected = embed_dataset(embedder, dataset.select(list(written["ids"][:4]), "first"), progress=False)
    np.testing.assert_allclose(written["embeddings"][:4], expected, atol=1e-5)  # the size was used
    assert evaluate.main([*common, "--run", siamese_run.path, "--imagenet-share", "0.5",
                          "--imagenet-size", "16x16"]) == 2
    assert "--imagenet-size: image_size must be (height, width), each >= 32" in capsys.readouterr().err


def test_an_export_with_the_classes_serves_what_the_run_embeds(siamese_run, weak_run, tmp_path, capsys):
    import tensorflow as tf

    from visnet import export
    from visnet.data.pipeline import preprocess_bytes
    from visnet.exporting import export_run, read_metadata
    from visnet.models.imagenet_classes import ImageNetClasses

    out = str(tmp_path / "models" / "shop")
    assert export.main(["--run", siamese_run.path, "--out", out, "--image-size", "80x60",
                        "--imagenet-share", "0.5", "--imagenet-size", "64x48"]) == 0
    metadata = read_metadata(out + "/1")
    assert metadata["embedding_dim"] == 1016 and metadata["imagenet_classes"] == {"share": 0.5, "image_size": [64, 48]}
    assert (metadata["image_spec"]["height"], metadata["image_spec"]["width"]) == (80, 60)
    data = [open(write_image(tmp_path / f"{i}.jpg", size=(90, 70), seed=i, fmt="JPEG"), "rb").read() for i in range(2)]
    served = tf.saved_model.load(out + "/1").signatures["serving_default"](image_bytes=tf.constant(data))
    spec = siamese_run.image_spec.__class__(**metadata["image_spec"])
    x = tf.stack([preprocess_bytes(tf.constant(d), spec) for d in data])
    expected = siamese_run.model(image_size=(80, 60), imagenet=ImageNetClasses(0.5, (64, 48))).predict(x, verbose=0)
    np.testing.assert_allclose(served["embedding"].numpy(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="weak-label run is exported as trained"):
        export_run(weak_run, str(tmp_path / "models" / "words"), imagenet=ImageNetClasses(0.5))


def test_the_benchmark_chooses_the_share_on_validation_and_measures_as_evaluate_does(
        siamese_run, weak_run, catalogue, tmp_path, capsys):
    from benchmarks import imagenet_classes
    from visnet import evaluate

    out = str(tmp_path / "classes")
    assert imagenet_classes.main(["--data", catalogue, "--run", f"tiny={siamese_run.path}", "--episodes", "3",
                                  "--class-size", "64x64", "--out", out]) == 0
    row = json.load(open(out + ".json"))["rows"][0]
    shares = [f"{s:g}" for s in imagenet_classes.SHARES]
    assert list(row["validation"]) == shares == list(row["novel"])
    assert row["validation"][row["chosen"]] == max(row["validation"].values())
    assert row["novel"][row["oracle"]]["mAP"] == max(v["mAP"] for v in row["novel"].values())
    assert row["class_size"] == [64, 64] and row["image_size"] == [64, 48]
    # The novel-class figures are visnet.evaluate's with that share (and without, for share 0).
    for share in ("0.3", "0"):
        results = tmp_path / "evaluate.json"
        flags = ["--imagenet-share", share, "--imagenet-size", "64x64"] if share != "0" else []
        assert evaluate.main(["--data", catalogue, "--run", siamese_run.path, "--episodes", "3", "--no-progress",
                              *flags, "--out", str(results)]) == 0
        figures = json.load(open(results))
        assert figures["open_set"]["mAP"] == pytest.approx(row["novel"][share]["mAP"], abs=1e-5)
        for cell in figures["few_shot"]:
            key = f"{cell['ways']}-way {cell['shots']}-shot"
            assert cell["accuracy"] == pytest.approx(row["novel"][share][key], abs=1e-9)
    assert "| side by side |" in open(out + ".md").read()
    pair = ["--run", f"pair={siamese_run.path}+{weak_run.path}"]
    with pytest.raises(SystemExit):
        imagenet_classes.main(["--data", catalogue, *pair])
    assert "no validation classes of their own" in capsys.readouterr().err
    # Several runs as one model take the share chosen for another run (a row of the report merged into).
    assert imagenet_classes.main(["--data", catalogue, "--run", f"tiny={siamese_run.path}", *pair,
                                  "--chosen-by", "pair=tiny", "--episodes", "3", "--class-size", "64x64",
                                  "--out", out]) == 0
    tiny, taken = json.load(open(out + ".json"))["rows"]
    assert taken["chosen"] == tiny["chosen"] and taken["validation"] == tiny["validation"]
    assert taken["novel"]["0"]["mAP"] != tiny["novel"]["0"]["mAP"]  # two runs side by side embed otherwise
    assert "| validation of tiny |" in open(out + ".md").read()


def test_the_choosing_benchmarks_take_the_classes_for_a_named_run(siamese_run, catalogue, tmp_path, capsys):
    from benchmarks import reranking, transductive

    out = str(tmp_path / "reranking")
    runs = ["--data", catalogue, "--run", f"plain={siamese_run.path}", "--run", f"classes={siamese_run.path}"]
    assert reranking.main([*runs, "--imagenet-classes", "classes=0.5@64x64", "--out", out]) == 0
    plain, classes = json.load(open(out + ".json"))["rows"]
    assert plain["novel"]["none"]["mAP"] != classes["novel"]["none"]["mAP"]  # another embedding
    assert classes["imagenet_classes"] == {"share": 0.5, "image_size": [64, 64]} and plain["imagenet_classes"] is None
    assert "| classes (ImageNet classes 0.5@64x64) |" in open(out + ".md").read()
    few = str(tmp_path / "transductive")
    assert transductive.main([*runs, "--imagenet-classes", "classes=0.5", "--episodes", "3", "--queries", "2",
                              "--out", few]) == 0
    plain, classes = json.load(open(few + ".json"))["rows"]
    assert plain["novel"] != classes["novel"] and classes["imagenet_classes"] == {"share": 0.5, "image_size": None}
    for bad, message in ((["other=0.5"], "NAME a --run name (plain, classes)"),
                         (["classes=2"], "share must be a number"), (["classes=0.5@8x8"], "image_size must be"),
                         (["classes=0.5", "classes=0.4"], "names the run 'classes' twice")):
        flags = [flag for value in bad for flag in ("--imagenet-classes", value)]
        with pytest.raises(SystemExit):
            reranking.main([*runs, *flags, "--out", out])
        assert message in capsys.readouterr().err


def test_recognise_and_the_few_shot_grid_take_the_classes(siamese_run, catalogue, tmp_path, capsys):
    from visnet import fewshot, recognise
    from visnet.data.readers import load_dataset

    photo = load_dataset(catalogue, check="none")[0]
    assert recognise.main(["--support", catalogue, "--run", siamese_run.path, "--imagenet-share", "0.3",
                           "--classifier", "1nn", "--top-k", "1", "--no-progress", photo.path]) == 0
    assert capsys.readouterr().out.split("\t")[1].split()[0] == photo.label  # its own photo is in the support
    out = str(tmp_path / "grid")
    assert fewshot.main(["--data", catalogue, "--run", siamese_run.path, "--imagenet-share", "0.3", "--ways", "2",
                         "--shots", "1", "--episodes", "3", "--queries", "2", "--no-progress", "--out", out]) == 0
    assert recognise.main(["--support", catalogue, "--embedder", "pixels", "--imagenet-share", "0.3",
                           "--no-progress", photo.path]) == 2
    assert "--imagenet-share applies to --run" in capsys.readouterr().err
