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

import keras

from visnet.layers.hog import HOG
from visnet.models.common import (
    check_share,
    embedding_head,
    image_input,
    pixel_scale,
    side_by_side,
    trunk,
)


def fuse(inputs, learned, hog_weight: float, normalization: str, hog_options: dict | None = None,
         name: str = "embedding"):
    """Concatenates the weighted learned embedding and the weighted HOG of `inputs`."""
    hog_weight = check_share(hog_weight, "hog_weight")
    hog = HOG(input_scale=pixel_scale(normalization, "The HOG pathway"), name="hog", **(hog_options or {}))(inputs)
    return side_by_side([("learned", learned), ("hog", hog)], [1 - hog_weight, hog_weight], name)


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
