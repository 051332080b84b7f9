"""The pretrained-extractor baseline: a backbone cut N layers below its top (`pretrained` embedder)
and the layer-removal grid (`python -m visnet.layer_removal`)."""

import csv
import json
import os

import numpy as np
import pytest


def _pooled(model, images):
    """Brute-force reference: the model's feature map averaged over space, L2-normalised."""
    maps = np.asarray(model.predict_on_batch(images))
    vectors = maps.mean(axis=(1, 2))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_each_cut_is_the_cut_backbone_averaged_and_normalised():
    from visnet.backbones import build_backbone
    from visnet.baselines import PretrainedEmbedder, embedders

    embed = embedders.get({"name": "pretrained", "backbone": "tiny", "weights": "none", "remove": [0, 1],
                           "image_size": (16, 12), "width": 4})
    images = np.random.default_rng(0).uniform(0, 1, (3, 16, 12, 3)).astype(np.float32)
    vectors = embed(images)
    assert vectors.shape == (3, 12) and embed.blocks == [(0, 8), (8, 12)]
    assert [c["layer"] for c in embed.describe()] == ["block2_conv", "block1_conv"]
    full = embed.model.get_layer("block2_conv")  # the same weights, cut by hand
    import keras

    trunk = keras.Model(embed.model.inputs, full.output)
    np.testing.assert_allclose(vectors[:, :8], _pooled(trunk, images), atol=1e-5)
    first = keras.Model(embed.model.inputs, embed.model.get_layer("block1_conv").output)
    np.testing.assert_allclose(vectors[:, 8:], _pooled(first, images), atol=1e-5)
    # One cut alone, from a fresh backbone with the same weights, gives the same block.
    single = PretrainedEmbedder("tiny", "none", 1, (16, 12), width=4)
    single.model.set_weights(first.get_weights())
    np.testing.assert_allclose(single(images), vectors[:, 8:], atol=1e-5)
    # remove_top_layers (the training flag) cuts at the same layer.
    assert build_backbone("tiny", (16, 12, 3), remove_top=1, width=4).layers[-1].name == "block1_conv"


def test_a_runs_trunk_is_the_extractor(siamese_run):
    from visnet.baselines import PretrainedEmbedder

    embed = PretrainedEmbedder(weights=f"run:{siamese_run.path}", remove=0)
    assert embed.image_spec == siamese_run.image_spec
    images = np.random.default_rng(1).uniform(0, 1, (2, *siamese_run.image_spec.size, 3)).astype(np.float32)
    trunk = siamese_run.model().get_layer("backbone")
    np.testing.assert_allclose(embed(images), _pooled(trunk, images), atol=1e-5)
    config = embed.get_config()
    assert config["name"] == f"pretrained:run:{os.path.basename(siamese_run.path)}"
    assert config["backbone"] == siamese_run.config.backbone  # the run's trunk, not the vgg16 default
    with pytest.raises(ValueError, match="Backbone options do not apply to run:"):
        PretrainedEmbedder(weights=f"run:{siamese_run.path}", width=8)


def test_bad_settings_name_the_value(tmp_path):
    from visnet.baselines import PretrainedEmbedder

    with pytest.raises(ValueError, match=r"must be in \[0, 1\] for tiny. Received: 5"):
        PretrainedEmbedder("tiny", "none", 5, (16, 16))
    with pytest.raises(ValueError, match="remove lists a cut twice"):
        PretrainedEmbedder("tiny", "none", [1, 1], (16, 16))
    with pytest.raises(ValueError, match="remove must be a number of layers"):
        PretrainedEmbedder("tiny", "none", "top", (16, 16))
    with pytest.raises(ValueError, match="no ImageNet weights for the tiny backbone"):
        PretrainedEmbedder("tiny", "imagenet", 0, (16, 16))
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        PretrainedEmbedder("tiny", str(tmp_path / "missing.weights.h5"), 0, (16, 16))
    with pytest.raises(FileNotFoundError, match="Run directory not found"):
        PretrainedEmbedder(weights=f"run:{tmp_path / 'nope'}")


def test_the_grid_has_one_row_per_cut_and_shots(catalogue, tmp_path, capsys):
    from visnet import layer_removal

    out = str(tmp_path / "grid" / "tiny")
    code = layer_removal.main(["--data", catalogue, "--backbone", "tiny", "--weights", "none", "--remove", "0,1",
                               "--backbone-option", "width=4", "--pca", "3", "--pca-images", "20", "--ways", "2",
                               "--shots", "1,2", "--episodes", "8", "--queries", "2", "--out", out, "--no-progress"])
    assert code == 0, capsys.readouterr().err
    with open(out + ".csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["removed"], r["layer"], r["dim"], r["shots"]) for r in rows] == [
        ("0", "block2_conv", "3", "1"), ("0", "block2_conv", "3", "2"),
        ("1", "block1_conv", "3", "1"), ("1", "block1_conv", "3", "2")]
    assert all(0 <= float(r["accuracy"]) <= 1 and r["episodes"] == "8" for r in rows)
    assert os.path.getsize(out + ".png") > 2000
    report = json.load(open(out + ".json"))
    assert report["pca"] == 3 and report["pca_images"] == 20 and len(report["cuts"]) == 2
    assert "-1: block1_conv (3)" in capsys.readouterr().out
    # Random weights are seeded: a second run draws the same network and the same figures.
    first = open(out + ".csv").read()
    assert layer_removal.main(["--data", catalogue, "--backbone", "tiny", "--weights", "none", "--remove", "0,1",
                               "--backbone-option", "width=4", "--pca", "3", "--pca-images", "20", "--ways", "2",
                               "--shots", "1,2", "--episodes", "8", "--queries", "2", "--out", out,
                               "--no-progress"]) == 0
    assert open(out + ".csv").read() == first

    assert layer_removal.main(["--backbone", "tiny", "--weights", "none", "--image-size", "16x16",
                               "--list-layers"]) == 0
    assert "1  block1_conv" in capsys.readouterr().out
    base = ["--data", catalogue, "--backbone", "tiny", "--weights", "none", "--out", out, "--no-progress"]
    assert layer_removal.main([*base, "--remove", "0,7"]) == 2
    assert "Received: 7" in capsys.readouterr().err
    assert layer_removal.main([*base, "--ways", "1"]) == 2
    assert "--ways must be >= 2" in capsys.readouterr().err
    assert layer_removal.main([*base, "--classifier", "svm"]) == 2
    assert "Unknown few-shot classifier: 'svm'" in capsys.readouterr().err
    assert layer_removal.main(["--backbone", "tiny", "--weights", "none"]) == 2
    assert "--data and --out are required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        layer_removal.main([*base, "--remove", "-1"])


def test_evaluate_takes_the_pretrained_embedder(catalogue, siamese_run, capsys):
    from visnet import evaluate

    def run(*options):
        return evaluate.main(["--data", catalogue, "--embedder", "pretrained", "--episodes", "4", "--no-progress",
                              *[word for option in options for word in ("--embedder-option", option)]])

    assert run("backbone=tiny", "weights=none", "remove=1", "width=4") == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "pretrained:tiny on" in captured.out and "note:" not in captured.err
    # A run's trunk trained on this data: its figures carry the run's training-overlap note.
    assert run(f"weights=run:{siamese_run.path}") == 0
    assert "note: the run trained on" in capsys.readouterr().err
