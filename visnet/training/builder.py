"""What a run is built from its `TrainConfig`: the loss config, the model, the input normalisation.

Shared by the Keras trainer (`visnet.training.trainer`) and MAML's own loop
(`visnet.training.maml`), so neither imports the other's module.
"""

from __future__ import annotations

import platform

import numpy as np

from visnet.training.config import TrainConfig
from visnet.training.phases import parse_trainable

_LOSS_KEYS = {
    "triplet": ("margin", "mining", "top_k", "distance"),
    "hinge": ("margin", "mining", "top_k"),
    "contrastive": ("margin", "distance"),
    "prototypical": ("shots",),
    "maml": ("shots",),  # the meta-learning loop of visnet.training.maml, not a Keras loss
    "normsoftmax": ("scale",),
    "sampled-softmax": ("negatives", "close_negatives", "scale"),
}


def resolve_loss(config: TrainConfig) -> dict:
    """The loss config: the architecture's default, or `config.loss`, with explicit overrides."""
    from visnet.models import architectures

    default = dict(architectures.lookup(config.arch).loss)
    name = config.loss or default["name"]
    if name not in _LOSS_KEYS:
        raise ValueError(f"loss must be one of {sorted(_LOSS_KEYS)}. Received: loss={name!r}")
    loss = default if name == default["name"] else {"name": name}
    for key in _LOSS_KEYS[name]:
        value = getattr(config, key)
        if value is not None:
            loss["gap" if name == "hinge" and key == "margin" else key] = value
    if name == "contrastive":  # --mining picks the pairs: PairSampler pairs, or every pair of a P x K batch
        if config.mining not in (None, "none", "batch-all"):
            raise ValueError(f"The contrastive loss takes mining none (sampled pairs, p_same) or batch-all "
                             f"(every pair of a P x K batch). Received: mining={config.mining!r}")
        loss["layout"] = "all-pairs" if config.mining == "batch-all" else "halves"
    if name == "prototypical":
        loss.setdefault("shots", max(1, config.k // 2))
    if name == "sampled-softmax" and config.arch != "weakly":
        raise ValueError(f"The sampled-softmax loss trains the word head of the weakly architecture. "
                         f"Received: arch={config.arch!r}")
    if config.arch == "weakly" and name != "sampled-softmax":
        raise ValueError(f"The weakly architecture trains with the sampled-softmax loss. Received: loss={name!r}")
    unused = [k for k in ("margin", "mining", "top_k", "distance", "shots", "scale", "negatives", "close_negatives")
              if getattr(config, k) is not None and k not in _LOSS_KEYS[name] + ("mining",) * (name == "contrastive")]
    if unused:
        raise ValueError(f"The {name} loss does not use {', '.join(unused)}.")
    return loss


def resolve_trunk(config: TrainConfig) -> tuple[str | None, str | None]:
    """(backbone, weights) a run uses: the config's, else the architecture's defaults. Its default
    weights go with its default backbone, and ImageNet weights with any trunk whose ImageNet
    weights load offline (`--backbone efficientnet-lite2` alone fine-tunes Lite2 from ImageNet);
    another trunk has none (its weights would need a download); `weights="none"` trains from
    scratch."""
    from visnet.backbones import backbone_info
    from visnet.models import architectures

    info = architectures.lookup(config.arch)
    backbone = config.backbone or info.backbone
    if config.weights is not None:
        return backbone, config.weights
    if backbone == info.backbone:
        return backbone, info.weights
    offline = info.weights == "imagenet" and backbone is not None and backbone_info(backbone).offline
    return backbone, "imagenet" if offline else None


def is_pretrained(weights: str | None) -> bool:
    return weights not in (None, "", "none", "None")


def with_defaults(config: TrainConfig) -> TrainConfig:
    """The config with the architecture's trunk defaults and, for a pretrained trunk trained
    without explicit phases, the fine-tuning recipe filled in (so the saved config.json says what
    ran): one epoch of the head on the frozen trunk at `lr`, then the top 3 blocks at 0.3 `lr`,
    batch norm frozen, with the photo augmentations (`Augmentation.photo()`, grey 0.2) when no
    augmentation is set. Modifies and returns `config`."""
    if config.arch == "maml":  # its own loop: no phases
        return config
    from visnet.models import architectures

    if architectures.lookup(config.arch).backbone is None:
        return config
    config.backbone, config.weights = resolve_trunk(config)
    auto = (is_pretrained(config.weights) and not config.phases and not config.freeze_epochs
            and str(config.trainable) == "all" and config.epochs >= 2)
    if auto:
        config.phases = [f"none:1:{config.lr:g}", f"3:{config.epochs - 1}:{0.3 * config.lr:g}"]
        if config.augment and not config.augmentation:
            # Customers' photos, not studio shots: measured better on both (README, "Off the studio").
            from visnet.data.augment import PHOTO_AUGMENTATION

            config.augmentation = {"grey": 0.2, **PHOTO_AUGMENTATION}
    if config.freeze_batchnorm is None:
        config.freeze_batchnorm = is_pretrained(config.weights)
    return config


def build_model(config: TrainConfig, loss_config: dict):
    from visnet.models import architectures, build

    info = architectures.lookup(config.arch)
    options = {"input_shape": (*config.image_size, 3), **config.arch_options}
    if config.embedding_dim is not None:
        options["embedding_dim"] = config.embedding_dim
    if info.backbone is None:
        given = [f for f in ("backbone", "weights") if getattr(config, f)] + (["backbone_options"] if config.backbone_options else [])
        if given or config.trainable != "all" or config.remove_top:
            raise ValueError(f"The {config.arch} architecture has its own feature block: it takes no "
                             f"backbone settings (got {', '.join(given) or 'trainable/remove_top'}).")
    else:
        backbone, weights = resolve_trunk(config)
        options.update(backbone=backbone, weights=weights,
                       trainable=parse_trainable(config.trainable), remove_top=config.remove_top,
                       backbone_options=config.backbone_options)
    return build(config.arch, **options)


def input_normalization(config: TrainConfig) -> str:
    from visnet.backbones import backbone_info

    backbone = resolve_trunk(config)[0]
    return backbone_info(backbone).normalization if backbone else "unit"


def versions() -> dict:
    import keras
    import tensorflow as tf

    import visnet

    return {"visnet": visnet.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version()}


def normalized_images(images: np.ndarray, normalization: str) -> np.ndarray:
    from visnet.data.pipeline import normalize_image

    return np.asarray(normalize_image(images.astype(np.float32), normalization))


