"""A pretrained network's features, cut N layers below its top, as an embedder: the Navee
report's pretrained-extractor baseline (§7.4, "layer removal").

The trunk is a registered backbone with ImageNet weights (`weights="imagenet"`, the normal
Keras download), a local weights file, no weights (random features, a floor), or the trunk of a
trained visnet run (`weights="run:runs/siamese"`: the run's `backbone` layer, at the run's
image size and normalisation). The feature map of the chosen layer is averaged over space and
L2-normalised.

Several cuts at once (`remove=[0, 2, 4]`) share one forward pass: the vector is the
concatenation of one L2-normalised block per cut, in that order, and `blocks` gives each
block's columns (`python -m visnet.layer_removal` evaluates each block on its own).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from visnet.baselines.common import check_size, l2_normalize
from visnet.data.image_spec import ImageSpec

RUN_PREFIX = "run:"


def load_trunk(backbone: str, weights: str | None, image_size, options: dict):
    """(trunk model, ImageSpec, backbone name) of a registered backbone, or of a run's trunk for
    `run:PATH` weights (at the run's image size and normalisation; `backbone` and `image_size`
    are then not used)."""
    if isinstance(weights, str) and weights.startswith(RUN_PREFIX):
        from visnet.training.runs import Run

        if options:
            raise ValueError(f"Backbone options do not apply to {weights} (the run fixes its trunk). "
                             f"Received: {options}")
        run = Run(weights[len(RUN_PREFIX):])
        model = run.model("best")
        try:
            trunk = model.get_layer("backbone")
        except ValueError:
            raise ValueError(f"The run {run.path} (--arch {run.config.arch}) has no `backbone` layer to cut; "
                             "runs of siamese, hybrid, protonet, maml and weakly have one.") from None
        return trunk, run.image_spec, run.config.backbone
    from visnet.backbones import backbone_info, build_backbone

    height, width = check_size(image_size)
    trunk = build_backbone(backbone, (height, width, 3), weights=weights, **options)
    spec = ImageSpec(height=height, width=width, resize="pad", normalization=backbone_info(backbone).normalization)
    return trunk, spec, backbone


def _removals(remove) -> tuple[int, ...]:
    values = (remove,) if isinstance(remove, (int, np.integer)) and not isinstance(remove, bool) else remove
    if (isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in values)):
        raise ValueError(f"remove must be a number of layers >= 0, or a list of them. Received: remove={remove!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"remove lists a cut twice. Received: remove={list(values)}")
    return tuple(int(v) for v in values)


class PretrainedEmbedder:
    """Features of a backbone cut `remove` layers below its output, averaged over space.

    Args:
        backbone: str. A registered backbone (`vgg16`, `resnet50`, `resnet18`, ...); with `run:`
            weights the run's own trunk is used (and reported).
        weights: `"imagenet"`, a local weights file, `"none"`, or `"run:PATH"` (a trained run's trunk).
        remove: int or list of int. Layers removed from the top (0: the backbone's output).
        image_size: (int, int). Input height and width (a run's trunk keeps the run's size).
        **options: backbone options (e.g. `width` for resnet18).

    Example:

    >>> embed = PretrainedEmbedder("tiny", weights="none", remove=[0, 1], image_size=(16, 16))
    >>> embed(np.zeros((2, 16, 16, 3), np.float32)).shape, embed.blocks
    ((2, 24), [(0, 16), (16, 24)])
    """

    follows_data_size = True

    def __init__(self, backbone: str = "vgg16", weights: str | None = "imagenet", remove=0,
                 image_size: tuple[int, int] = (128, 96), **options):
        import keras

        from visnet.backbones.base import cut_layer

        self.removals = _removals(remove)
        self.weights = weights
        trunk, self.image_spec, self.backbone = load_trunk(backbone, weights, image_size, options)
        self.layers = [cut_layer(trunk, n) for n in self.removals]
        pooled = [keras.layers.GlobalAveragePooling2D(name=f"pool_minus{n}")(layer.output)
                  for n, layer in zip(self.removals, self.layers)]
        self.model = keras.Model(trunk.inputs, pooled, name=f"{trunk.name}_cuts")
        widths = np.cumsum([0] + [int(layer.output.shape[-1]) for layer in self.layers])
        self.blocks = list(zip(widths[:-1].tolist(), widths[1:].tolist()))
        self.dim = int(widths[-1])
        self.options = options

    def __call__(self, images: np.ndarray) -> np.ndarray:
        outputs = self.model.predict_on_batch(np.asarray(images, np.float32))
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return np.concatenate([l2_normalize(np.asarray(o)) for o in outputs], axis=1)

    def describe(self) -> list[dict]:
        """One entry per cut: layers removed, the layer kept as output, its feature width."""
        return [{"removed": n, "layer": layer.name, "dim": int(layer.output.shape[-1])}
                for n, layer in zip(self.removals, self.layers)]

    def get_config(self) -> dict:
        weights = self.weights
        if isinstance(weights, str) and not weights.startswith(RUN_PREFIX) and os.path.isfile(weights):
            weights = os.path.basename(weights)
        from_run = isinstance(weights, str) and weights.startswith(RUN_PREFIX)
        name = (f"pretrained:run:{os.path.basename(os.path.normpath(weights[len(RUN_PREFIX):]))}" if from_run
                else f"pretrained:{self.backbone}")
        return {"name": name, "backbone": self.backbone, "weights": weights, "remove": list(self.removals),
                "image_size": [self.image_spec.height, self.image_spec.width], **self.options}
