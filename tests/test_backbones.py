import keras
import numpy as np
import pytest

from visnet.backbones import backbone_info, backbones, build_backbone


@pytest.mark.parametrize("name, shape", [("resnet18", (32, 32, 3)), ("koch", (32, 24, 3)),
                                         ("conv4", (32, 16, 3)), ("tiny", (16, 12, 3))])
def test_written_backbones_give_feature_maps(name, shape):
    model = build_backbone(name, shape, width=4)
    assert len(model.output.shape) == 4
    out = model(np.zeros((2, *shape), np.float32))
    assert out.shape[0] == 2 and np.all(np.isfinite(np.asarray(out)))


@pytest.mark.parametrize("name, blocks", [("vgg16", 5), ("resnet50", 5)])
def test_keras_applications_without_download(name, blocks):
    model = build_backbone(name, (32, 32, 3))
    assert model.output.shape[1:] == (1, 1, 512 if name == "vgg16" else 2048)
    assert backbone_info(name).normalization == "caffe" and len(backbone_info(name).blocks) == blocks


def test_trainable_policies():
    frozen = build_backbone("resnet18", (32, 32, 3), trainable="none", width=4)
    assert not frozen.trainable_weights
    last = build_backbone("resnet18", (32, 32, 3), trainable=1, width=4)
    names = {w.path.split("/")[0] for w in last.trainable_weights}
    assert names and all(n.startswith("stage4_") for n in names)
    assert build_backbone("vgg16", (32, 32, 3), trainable=2).trainable_weights[0].path.startswith("block4_")
    with pytest.raises(ValueError, match="trainable=9 blocks, but the backbone has 5"):
        build_backbone("resnet18", (32, 32, 3), trainable=9, width=4)


def test_remove_top_layers_cuts_the_trunk():
    full = build_backbone("vgg16", (64, 64, 3))
    cut = build_backbone("vgg16", (64, 64, 3), remove_top=1)  # drops block5_pool
    assert full.output.shape[1:] == (2, 2, 512) and cut.output.shape[1:] == (4, 4, 512)
    with pytest.raises(ValueError, match="layers to remove must be in"):
        build_backbone("tiny", (16, 16, 3), remove_top=5)


def test_local_weights_file_round_trip(tmp_path):
    model = build_backbone("conv4", (16, 16, 3), width=4)
    model.set_weights([w + 0.5 for w in model.get_weights()])
    path = str(tmp_path / "conv4.weights.h5")
    model.save_weights(path)
    loaded = build_backbone("conv4", (16, 16, 3), weights=path, width=4)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b)
    with pytest.raises(FileNotFoundError, match="Weights file not found: nope.h5"):
        build_backbone("conv4", (16, 16, 3), weights="nope.h5")


def test_failed_imagenet_download_is_a_clear_message(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.applications.vgg16.file_utils.get_file", offline)
    with pytest.raises(RuntimeError, match="--weights none.*--weights PATH"):
        build_backbone("vgg16", (32, 32, 3), weights="imagenet")
    with pytest.raises(ValueError, match="no ImageNet weights for the resnet18"):
        build_backbone("resnet18", (32, 32, 3), weights="imagenet")


def test_input_and_option_errors_name_the_values():
    with pytest.raises(ValueError, match="Images of 16x16 are too small for the vgg16 backbone: it needs at least 32x32"):
        build_backbone("vgg16", (16, 16, 3))
    with pytest.raises(ValueError, match="Bad option for the tiny backbone"):
        build_backbone("tiny", (16, 16, 3), depth=3)
    assert backbones.names() == ["conv4", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "koch", "resnet18", "resnet50", "tiny", "vgg16"]
