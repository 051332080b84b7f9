"""Architectures, resolved by name: `visnet.models.build("capsule", input_shape=(128, 96, 3))`.

Every architecture is a functional Keras model from images to embeddings; what makes it a
ranking, Siamese, triplet or prototypical network is the loss and sampler it trains with
(`ArchInfo.loss`, the default).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import keras

from visnet.models.capsule import build_capsule
from visnet.models.ensemble import ensemble_model
from visnet.models.hybrid import build_hybrid, with_hog
from visnet.models.maml import build_maml
from visnet.models.protonet import build_protonet
from visnet.models.siamese import build_siamese
from visnet.models.visnet import build_visnet
from visnet.models.weakly import build_weakly, words_head
from visnet.registry import Registry


@dataclasses.dataclass(frozen=True)
class ArchInfo:
    build: Callable[..., keras.Model]
    loss: dict  # default loss config
    backbone: str | None  # default backbone, None when the architecture has its own trunk
    embedding_dim: int
    # Default weights of the default backbone (`imagenet`: pretrained), and with `imagenet` of any trunk
    # whose ImageNet weights load offline (`visnet.training.builder.resolve_trunk`).
    weights: str | None = None

    def parameters(self) -> list[str]:
        return list(inspect.signature(self.build).parameters)


architectures = Registry("architecture")
architectures.register("visnet")(ArchInfo(build_visnet, {"name": "hinge", "gap": 1.0, "mining": "semi-hard"}, "vgg16", 512))
architectures.register("capsule")(ArchInfo(build_capsule, {"name": "triplet", "margin": 0.2, "distance": "squared",
                                                            "mining": "semi-hard"}, None, 128))
# A pretrained trunk where it measured better than training from scratch (README, Results).
architectures.register("siamese")(ArchInfo(build_siamese, {"name": "triplet", "margin": 0.2, "mining": "semi-hard"},
                                           "efficientnet-lite0", 128, "imagenet"))
architectures.register("hybrid")(ArchInfo(build_hybrid, {"name": "normsoftmax", "scale": 16.0}, "resnet18", 128))
architectures.register("weakly")(ArchInfo(build_weakly, {"name": "sampled-softmax", "negatives": 100,
                                                           "close_negatives": 0, "scale": 16.0}, "efficientnet-lite0", 400,
                                         "imagenet"))
architectures.register("protonet")(ArchInfo(build_protonet, {"name": "prototypical"}, "conv4", 0))
architectures.register("maml")(ArchInfo(build_maml, {"name": "maml"}, "conv4", 0))


def build(name: str, **options: Any) -> keras.Model:
    """Builds architecture `name`; options it does not take are an error naming them."""
    info = architectures.lookup(name)
    unknown = sorted(set(options) - set(info.parameters()))
    if unknown:
        raise ValueError(f"The {name} architecture does not take {', '.join(unknown)}. "
                         f"It takes: {', '.join(info.parameters())}.")
    return info.build(**options)


__all__ = ["ArchInfo", "architectures", "build", "build_capsule", "build_hybrid", "build_maml", "build_protonet",
           "build_siamese", "build_visnet", "build_weakly", "ensemble_model", "with_hog", "words_head"]
