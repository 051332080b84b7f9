"""Hybrid embedding: a learned embedding and a fixed HOG pathway, side by side.

VisNet (003) pairs a deep trunk with shallow paths that keep low-level visual detail. Trained
from scratch on a few thousand catalogue photos, a deep trunk still misses the fine silhouette
that HOG captures on small, rigid products (watches, perfume, nail polish), while it beats HOG
on garments and shoes. The hybrid keeps both: its embedding is

    [ sqrt(1 - w) * learned(x) ,  sqrt(w) * HOG(x) ]      (each part L2-normalised)

so squared distances are (1 - w) * d_learned^2 + w * d_HOG^2. Trained as an architecture
(`--arch hybrid`), the loss sees the whole vector and the trunk learns what HOG misses; applied
to a finished run (`with_hog`), it fuses the two after training.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from visnet.layers.hog import HOG
from visnet.models.common import embedding_head, image_input, trunk

#: How far each input normalisation is from [0, 255] pixels (HOG needs pixels).
_PIXEL_SCALE = {"none": 1.0, "unit": 255.0}


def _check_weight(hog_weight: float) -> float:
    if isinstance(hog_weight, bool) or not isinstance(hog_weight, (int, float)) or not 0 < hog_weight < 1:
        raise ValueError(f"hog_weight must be a number in (0, 1). Received: hog_weight={hog_weight!r}")
    return float(hog_weight)


def _pixel_scale(normalization: str) -> float:
    if normalization not in _PIXEL_SCALE:
        raise ValueError(f"The HOG pathway needs pixels in [0, 255] or [0, 1]; a trunk whose input is "
                         f"normalised as {normalization!r} cannot feed it. Use a trunk with 'unit' or 'none' "
                         f"normalisation (resnet18, koch, conv4, tiny).")
    return _PIXEL_SCALE[normalization]


def fuse(inputs, learned, hog_weight: float, normalization: str, hog_options: dict | None = None,
         name: str = "embedding"):
    """Concatenates the weighted learned embedding and the weighted HOG of `inputs`."""
    hog_weight = _check_weight(hog_weight)
    hog = HOG(input_scale=_pixel_scale(normalization), name="hog", **(hog_options or {}))(inputs)
    parts = [layers.Rescaling(math.sqrt(1 - hog_weight), name="learned_weight")(learned),
             layers.Rescaling(math.sqrt(hog_weight), name="hog_weight")(hog)]
    # Both parts are unit vectors, so the concatenation already has norm 1; the final
    # normalisation names the output and guards against rounding.
    return layers.UnitNormalization(name=name, dtype="float32")(layers.Concatenate(name="fused")(parts))


def build_hybrid(
    input_shape=(128, 96, 3),
    embedding_dim: int = 128,
    backbone: str = "resnet18",
    weights: str | None = None,
    trainable: str | int = "all",
    remove_top: int = 0,
    backbone_options: dict | None = None,
    dropout: float = 0.0,
    pooling: str = "avg",
    hog_weight: float = 0.5,
    hog_options: dict | None = None,
) -> keras.Model:
    """Siamese tower (backbone -> pooling -> Dense -> L2) beside a fixed HOG pathway.

    Args:
        hog_weight: float in (0, 1). Share of the squared distance given to HOG.
        hog_options: dict. `block`, `stride`, `cell`, `bins` of the HOG layer (OpenCV's
            16/8/8/9 by default). The image height and width must fit its blocks.
        Other arguments: as `build_siamese`.

    The embedding has `embedding_dim` + HOG-size values (5940 more at 128x96 with the defaults).
    """
    from visnet.backbones import backbone_info

    inputs = image_input(input_shape)
    features = trunk(inputs, backbone, weights, trainable, remove_top, backbone_options)
    learned = embedding_head(features, embedding_dim, dropout, pooling, name="learned")
    outputs = fuse(inputs, learned, hog_weight, backbone_info(backbone).normalization, hog_options)
    return keras.Model(inputs, outputs, name="hybrid")


def with_hog(model: keras.Model, hog_weight: float, normalization: str,
             hog_options: dict | None = None) -> keras.Model:
    """A trained embedding model with a HOG pathway added after training (same input)."""
    name = model.name
    inputs = keras.Input(tuple(model.inputs[0].shape[1:]), name="image")
    model.name = "learned_model"
    return keras.Model(inputs, fuse(inputs, model(inputs), hog_weight, normalization, hog_options),
                       name=f"{name}_hog")
