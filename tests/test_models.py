import numpy as np
import pytest
from helpers import check_model

from visnet import models
from visnet.losses import PrototypicalLoss, TripletLoss

TINY = {
    "siamese": dict(embedding_dim=8, backbone="tiny", backbone_options={"width": 4}),
    "visnet": dict(embedding_dim=8, backbone="tiny", backbone_options={"width": 4}, deep_dim=16, shallow_filters=4),
    "capsule": dict(embedding_dim=8, filters=(4, 8), primary_capsules=2, primary_dim=4, capsule_dim=4, routings=2),
    "protonet": dict(embedding_dim=0, backbone="conv4", backbone_options={"width": 4}),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_architecture_standard_checks(name, tmp_path):
    model = models.build(name, input_shape=(32, 32, 3), **TINY[name])
    dim = 4 * 2 * 2 if name == "protonet" else 8
    loss = PrototypicalLoss(shots=1) if name == "protonet" else TripletLoss(mining="batch-all")
    check_model(model, (32, 32, 3), (dim,), tmp_path, loss=loss, labels=[0, 0, 1, 1])
    if name != "protonet":
        out = model.predict(np.random.default_rng(0).uniform(size=(3, 32, 32, 3)).astype("float32"), verbose=0)
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_visnet_has_a_deep_and_two_shallow_paths():
    model = models.build("visnet", input_shape=(64, 64, 3), **TINY["visnet"])
    names = {layer.name for layer in model.layers}
    assert {"backbone", "deep_l2", "shallow4_conv", "shallow8_conv", "shallow_l2", "embedding"} <= names
    assert model.get_layer("shallow4_downsample").output.shape[1:3] == (16, 16)
    assert model.get_layer("shallow8_downsample").output.shape[1:3] == (8, 8)


def test_capsule_feature_blocks_and_routing_options():
    sc = models.build("capsule", input_shape=(32, 32, 3), features="sc", **{**TINY["capsule"], "routings": 1})
    rc = models.build("capsule", input_shape=(32, 32, 3), features="rc", **TINY["capsule"])
    assert "sc1a_lrelu" in {layer.name for layer in sc.layers} and "rc1_add" in {layer.name for layer in rc.layers}
    assert rc.get_layer("class_capsules").routings == 2 and sc.get_layer("class_capsules").routings == 1


def test_architecture_errors_name_the_values():
    with pytest.raises(ValueError, match="Unknown architecture: 'resnet'"):
        models.build("resnet")
    with pytest.raises(ValueError, match="The capsule architecture does not take backbone"):
        models.build("capsule", backbone="vgg16")
    with pytest.raises(ValueError, match="embedding_dim must be a multiple of capsule_dim"):
        models.build("capsule", input_shape=(32, 32, 3), embedding_dim=10, capsule_dim=4, filters=(4,))
    with pytest.raises(ValueError, match="features='xc'"):
        models.build("capsule", features="xc")
    with pytest.raises(ValueError, match="VisNet needs images of at least 32x32"):
        models.build("visnet", input_shape=(16, 16, 3), backbone="tiny")
    with pytest.raises(ValueError, match=r"input_shape must be \(height, width, 3\)"):
        models.build("siamese", input_shape=(32, 32, 1), backbone="tiny")
