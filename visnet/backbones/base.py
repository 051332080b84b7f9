"""What every backbone shares: weights (ImageNet, a local file or none), freezing, layer removal."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

import keras


@dataclasses.dataclass(frozen=True)
class BackboneInfo:
    """How to build and feed a backbone.

    Args:
        build: callable(input_shape, weights, **options) -> keras.Model from images to a 4-D
            feature map.
        normalization: str. The pipeline normalisation its weights expect (`caffe` for
            keras.applications VGG16/ResNet50).
        min_size: int. Smallest input height/width it accepts.
        blocks: sequence of str. Layer-name prefixes of its blocks, input to output, for
            "last N blocks trainable".
        imagenet: bool. Whether `weights="imagenet"` exists for it.
        offline: bool. Whether those weights load without a download (from an installed package).
    """

    build: Callable[..., keras.Model]
    normalization: str
    min_size: int
    blocks: Sequence[str]
    imagenet: bool = False
    offline: bool = False


def check_input(name: str, info: BackboneInfo, input_shape) -> None:
    height, width = input_shape[0], input_shape[1]
    if height < info.min_size or width < info.min_size:
        raise ValueError(
            f"Images of {height}x{width} are too small for the {name} backbone: it needs at least "
            f"{info.min_size}x{info.min_size}. Use a larger --image-size or a smaller backbone."
        )


def resolve_weights(name: str, info: BackboneInfo, weights: str | None) -> tuple[str | None, str | None]:
    """(weights for the Keras constructor, local file to load afterwards)."""
    if weights in (None, "none", "None", ""):
        return None, None
    if weights == "imagenet":
        if not info.imagenet:
            raise ValueError(f"There are no ImageNet weights for the {name} backbone. Use weights=none or a file.")
        return "imagenet", None
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"Weights file not found: {weights} (weights must be 'imagenet', 'none' or a file).")
    return None, weights


def download_error(name: str, error: Exception) -> RuntimeError:
    return RuntimeError(
        f"Could not download the ImageNet weights of {name} ({type(error).__name__}: {error}). "
        "This machine may have no internet access: train from scratch with --weights none, or "
        "pass a local weights file with --weights PATH (e.g. the Keras "
        f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5)."
    )


def set_trainable(model: keras.Model, info: BackboneInfo, trainable: str | int) -> None:
    """`all`: everything trains; `none`: the backbone is frozen; an int N: only its last N blocks train.

    Every layer's own flag is set. Under the TensorFlow backend Keras skips an assignment of the
    value an attribute already has, so once an `N` call had set the model's own flag to True,
    `model.trainable = True` reached no layer, and `all` after `3` trained only the last 3 blocks.
    """
    if trainable in ("all", "none", 0):
        model.trainable = trainable == "all"
        for layer in model.layers:
            layer.trainable = model.trainable
        return
    try:
        n = int(trainable)
    except (TypeError, ValueError):
        raise ValueError(f"trainable must be 'all', 'none' or a number of blocks. Received: trainable={trainable!r}") from None
    if not 0 < n <= len(info.blocks):
        raise ValueError(f"trainable={n} blocks, but the backbone has {len(info.blocks)}: {list(info.blocks)}")
    open_blocks = tuple(info.blocks[-n:])
    model.trainable = True  # a frozen model would hide the blocks opened below
    for layer in model.layers:
        layer.trainable = layer.name.startswith(open_blocks)


def cuttable_layers(model: keras.Model) -> list:
    """The model's layers from its output down (index n: the layer that `remove n` keeps)."""
    return [layer for layer in reversed(model.layers) if not isinstance(layer, keras.layers.InputLayer)]


def cut_layer(model: keras.Model, n: int):
    """The layer `n` layers below `model`'s output (0: the output layer), checked to give a feature map."""
    layers = cuttable_layers(model)
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < len(layers):
        raise ValueError(f"The number of layers to remove must be in [0, {len(layers) - 1}] for {model.name}. "
                         f"Received: {n!r}")
    layer = layers[n]
    if len(layer.output.shape) != 4:
        raise ValueError(f"Removing {n} layers from {model.name} leaves {layer.name}, whose output is "
                         f"{len(layer.output.shape)}-D; need a feature map.")
    return layer


def remove_top_layers(model: keras.Model, n: int) -> keras.Model:
    """The backbone cut `n` layers below its output (the Navee report's layer removal)."""
    if n == 0:
        return model
    return keras.Model(model.inputs, cut_layer(model, n).output, name=f"{model.name}_minus{n}")
