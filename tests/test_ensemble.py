"""Several runs as one model: the embedding, the run-level ensemble, evaluation and export."""

import json
import os
import shutil

import numpy as np
import pytest
from helpers import check_model, write_image


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _tiny(seed: int, dim: int, shape=(8, 6, 3)):
    import keras

    inputs = keras.Input(shape)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(dim, kernel_initializer=keras.initializers.GlorotUniform(seed), name="dense")(x)
    return keras.Model(inputs, keras.layers.UnitNormalization(name="embedding")(x))


def _run_copy(path, dest, size=None, **image_spec) -> str:
    """A copy of the run at `path` whose run.json records another image spec; with `size` (height,
    width), its best checkpoint is the run's embedding rebuilt at that input size, as if trained there."""
    from visnet.training.runs import Run

    shutil.copytree(path, dest)
    if size is not None:
        Run(path).model(image_size=size).save(os.path.join(dest, "best.keras"))
        image_spec.update(height=size[0], width=size[1])
        config = json.load(open(os.path.join(dest, "config.json")))
        json.dump({**config, "image_size": list(size)}, open(os.path.join(dest, "config.json"), "w"))
    info = json.load(open(os.path.join(dest, "run.json")))
    info["image_spec"].update(image_spec)
    json.dump(info, open(os.path.join(dest, "run.json"), "w"))
    return str(dest)


def test_the_ensemble_embedding_is_the_members_side_by_side_at_unit_length(tmp_path):
    from visnet.models import ensemble_model

    a, b = _tiny(0, 4), _tiny(1, 3)
    x = np.random.default_rng(0).uniform(0, 1, (5, 8, 6, 3)).astype("float32")
    expected = np.concatenate([a.predict(x, verbose=0), b.predict(x, verbose=0)], axis=1) / np.sqrt(2)
    model = ensemble_model([a, b])
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-6)
    # squared distances are the mean of the members'
    e, ea, eb = model.predict(x, verbose=0), a.predict(x, verbose=0), b.predict(x, verbose=0)
    d = lambda v: ((v[:, None] - v[None]) ** 2).sum(-1)  # noqa: E731
    np.testing.assert_allclose(d(e), (d(ea) + d(eb)) / 2, atol=1e-5)
    check_model(model, (8, 6, 3), (7,), tmp_path)

    with pytest.raises(ValueError, match="at least 2 models. Received: 1"):
        ensemble_model([a])
    with pytest.raises(ValueError, match=r"same input. Received input shapes: \[\(8, 6, 3\), \(9, 6, 3\)\]"):
        ensemble_model([_tiny(0, 4), _tiny(1, 4, shape=(9, 6, 3))])


def test_a_run_ensemble_embeds_like_its_runs_side_by_side(siamese_run, weak_run, tmp_path):
    from visnet.training.runs import Run, RunEnsemble

    ensemble = RunEnsemble([siamese_run.path, weak_run.path])
    x = np.random.default_rng(0).uniform(0, 255, (3, *siamese_run.model().inputs[0].shape[1:])).astype("float32")
    expected = np.concatenate([_unit(Run(siamese_run.path).embedder()(x)), _unit(Run(weak_run.path).embedder()(x))],
                              axis=1) / np.sqrt(2)
    embedder = ensemble.embedder()
    np.testing.assert_allclose(embedder(x), expected, atol=1e-5)
    assert embedder.name == "ensemble:siamese+weakly" and ensemble.arch == "ensemble"
    assert ensemble.source == [os.path.abspath(siamese_run.path), os.path.abspath(weak_run.path)]
    assert ensemble.embedder(image_size=(80, 60)).image_spec.height == 80  # every member rebuilt at the size

    with pytest.raises(ValueError, match="at least 2 runs"):
        RunEnsemble([siamese_run.path])
    with pytest.raises(ValueError, match="the same run twice"):
        RunEnsemble([siamese_run.path, siamese_run.path + os.sep])
    # A run trained at another size joins at the first run's size (or the one asked for).
    size = (siamese_run.image_spec.height, siamese_run.image_spec.width)
    other = _run_copy(siamese_run.path, tmp_path / "other-size", size=(size[0] + 8, size[1] + 8))
    assert Run(other).model().inputs[0].shape[1:3] == (size[0] + 8, size[1] + 8)
    sized = RunEnsemble([siamese_run.path, other])
    assert sized.image_spec == siamese_run.image_spec
    expected = np.concatenate([_unit(Run(siamese_run.path).embedder()(x)),
                               _unit(Run(other).embedder(image_size=size)(x))], axis=1) / np.sqrt(2)
    np.testing.assert_allclose(sized.embedder()(x), expected, atol=1e-5)
    assert sized.embedder(image_size=(80, 60)).image_spec.height == 80
    other = _run_copy(siamese_run.path, tmp_path / "other-resize", resize="crop")
    with pytest.raises(ValueError, match=r"must read images the same way \(the input size aside\); their image specs"):
        RunEnsemble([siamese_run.path, other])


def test_evaluate_and_export_take_several_runs_as_one_model(siamese_run, weak_run, catalogue, tmp_path, capsys):
    import tensorflow as tf

    from visnet import evaluate, export
    from visnet.data.pipeline import preprocess_bytes
    from visnet.exporting import read_metadata
    from visnet.training.runs import RunEnsemble

    out = str(tmp_path / "results.json")
    assert evaluate.main(["--data", catalogue, "--run", siamese_run.path, "--run", weak_run.path, "--episodes", "5",
                          "--no-progress", "--out", out]) == 0
    results = json.load(open(out))
    assert results["embedder"]["name"] == "ensemble:siamese+weakly" and 0 < results["open_set"]["mAP"] <= 1
    assert evaluate.main(["--data", catalogue, "--run", siamese_run.path, "--run", weak_run.path,
                          "--hog-weight", "0.5", "--no-progress"]) == 2
    assert "--hog-weight applies to one run, not to an ensemble of 2" in capsys.readouterr().err

    from visnet import embed

    npz = str(tmp_path / "both.npz")
    assert embed.main(["--run", siamese_run.path, "--run", weak_run.path, "--data", catalogue, "--out", npz,
                       "--no-progress"]) == 0
    single = str(tmp_path / "one.npz")
    assert embed.main(["--run", siamese_run.path, "--data", catalogue, "--out", single, "--no-progress"]) == 0
    both, one = np.load(npz)["embeddings"], np.load(single)["embeddings"]
    assert both.shape[1] == one.shape[1] + 16  # the weak-label run's 16 dimensions beside the siamese run's 16
    np.testing.assert_allclose(both[:, :one.shape[1]] * np.sqrt(2), one, atol=1e-5)

    base = str(tmp_path / "models" / "both")
    assert export.main(["--run", siamese_run.path, "--run", weak_run.path, "--out", base]) == 0
    assert "exported ensemble run" in capsys.readouterr().out
    target = os.path.join(base, "1")
    metadata = read_metadata(target)
    assert metadata["arch"] == "ensemble" and len(metadata["run"]) == 2 and metadata["signatures"] == ["serving_default"]
    ensemble = RunEnsemble([siamese_run.path, weak_run.path])
    images = [open(write_image(tmp_path / f"{i}.jpg", size=(70, 50), seed=i, fmt="JPEG"), "rb").read() for i in range(3)]
    served = tf.saved_model.load(target).signatures["serving_default"](image_bytes=tf.constant(images))
    x = tf.stack([preprocess_bytes(tf.constant(data), ensemble.image_spec) for data in images])
    np.testing.assert_allclose(served["embedding"].numpy(), ensemble.model().predict(x, verbose=0), atol=1e-5)
    assert metadata["embedding_dim"] == served["embedding"].shape[1]
