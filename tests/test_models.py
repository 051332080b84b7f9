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
    "hybrid": dict(embedding_dim=8, backbone="tiny", backbone_options={"width": 4}, hog_weight=0.3),
}
#: HOG size of a 32x32 image with 16/8/8/9 blocks: 3 x 3 blocks x 4 cells x 9 bins.
HOG_32 = 324


@pytest.mark.parametrize("name", sorted(TINY))
def test_architecture_standard_checks(name, tmp_path):
    model = models.build(name, input_shape=(32, 32, 3), **TINY[name])
    dim = {"protonet": 4 * 2 * 2, "hybrid": 8 + HOG_32}.get(name, 8)
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


def test_hybrid_is_a_weighted_concatenation_of_learned_and_hog(tmp_path):
    import keras

    from visnet.baselines.hog import HOGEmbedder

    model = models.build("hybrid", input_shape=(32, 32, 3), **TINY["hybrid"])
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (3, 32, 32, 3)).astype("float32")  # resnet18/tiny inputs are in [0, 1]
    out = model.predict(x, verbose=0)
    learned = keras.Model(model.input, model.get_layer("learned").output).predict(x, verbose=0)
    hog = HOGEmbedder(image_size=(32, 32))(x * 255)
    np.testing.assert_allclose(out[:, :8], np.sqrt(0.7) * learned, atol=1e-5)
    np.testing.assert_allclose(out[:, 8:], np.sqrt(0.3) * hog, atol=1e-4)
    # Squared distances are the weighted sum of the parts' squared distances.
    d = lambda v: ((v[0] - v[1]) ** 2).sum()  # noqa: E731
    np.testing.assert_allclose(d(out), 0.7 * d(learned) + 0.3 * d(hog), rtol=1e-3)
    # The HOG pathway has no weights: only the learned tower trains.
    assert model.get_layer("hog").count_params() == 0


def test_with_hog_adds_the_pathway_to_a_trained_model():
    tower = models.build("siamese", input_shape=(32, 32, 3), **TINY["siamese"])
    x = np.random.default_rng(1).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    before = tower.predict(x, verbose=0)
    fused = models.with_hog(tower, 0.5, "unit")
    assert fused.name == "siamese_hog" and fused.output.shape[-1] == 8 + HOG_32
    np.testing.assert_allclose(fused.predict(x, verbose=0)[:, :8], np.sqrt(0.5) * before, atol=1e-5)


def test_hybrid_errors_name_the_values():
    with pytest.raises(ValueError, match="hog_weight=1.5"):
        models.build("hybrid", input_shape=(32, 32, 3), **{**TINY["hybrid"], "hog_weight": 1.5})
    with pytest.raises(ValueError, match="normalised as 'caffe' cannot feed it"):
        models.with_hog(models.build("siamese", input_shape=(32, 32, 3), **TINY["siamese"]), 0.5, "caffe")
    with pytest.raises(ValueError, match="height 30 does not fit HOG blocks"):
        models.build("hybrid", input_shape=(30, 32, 3), **TINY["hybrid"])


def test_maml_network_standard_checks_and_its_embedding(tmp_path):
    import keras

    from visnet.models.common import embedding_model

    model = models.build("maml", input_shape=(32, 32, 3), ways=3, backbone="conv4", backbone_options={"width": 4})
    check_model(model, (32, 32, 3), (3,), tmp_path, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                labels=[0, 1, 2, 1])
    assert embedding_model(model).output.shape[-1] == 4 * 2 * 2  # the head dropped
    with pytest.raises(ValueError, match="ways must be >= 2"):
        models.build("maml", input_shape=(32, 32, 3), ways=1)
