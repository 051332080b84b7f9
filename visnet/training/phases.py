"""Fine-tuning phases: which trunk blocks train, for how many epochs, at which learning rate.

A pretrained trunk is fine-tuned in steps: first the head alone on a frozen trunk (so randomly
initialised layers do not send large gradients into the pretrained weights), then the top
blocks, then more, each phase with a fresh optimizer, its own learning rate and warm-up.
`--phase none:1:1e-3 --phase 3:2:3e-4 --phase all:3:1e-4` is that recipe; `--freeze-epochs F`
is the two-phase shorthand `none:F`, then the configured `--trainable` for the rest.

Batch norm: with `freeze_batchnorm` the trunk's batch-norm layers keep their pretrained
statistics and affine weights (they run in inference mode) in every phase; otherwise they
follow their block.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Phase:
    """Epochs [start, end) train the trunk's `trainable` blocks (`all`, `none` or N) at `lr`."""

    trainable: str | int
    start: int
    end: int
    lr: float

    @property
    def epochs(self) -> int:
        return self.end - self.start

    def describe(self) -> str:
        what = {"all": "the whole trunk", "none": "the trunk frozen"}.get(str(self.trainable),
                                                                          f"the top {self.trainable} trunk blocks")
        return f"epochs {self.start + 1}-{self.end}: {what}, lr {self.lr:g}"


def parse_trainable(value) -> str | int:
    """`all`, `none` or a positive number of blocks."""
    text = str(value).strip().lower()
    if text in ("all", "none"):
        return text
    if text.isdigit():
        return int(text) or "none"
    raise ValueError(f"trainable must be 'all', 'none' or a number of blocks. Received: trainable={value!r}")


def parse_phase(text: str, default_lr: float) -> tuple[str | int, int, float]:
    """`TRAINABLE:EPOCHS[:LR]`, e.g. `none:1:1e-3`, `3:2`, `all:4:1e-4` -> (trainable, epochs, lr)."""
    parts = str(text).split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"A phase is TRAINABLE:EPOCHS[:LR], e.g. none:1:1e-3 or all:3:1e-4. Received: {text!r}")
    trainable = parse_trainable(parts[0])
    try:
        epochs = int(parts[1])
        lr = float(parts[2]) if len(parts) == 3 else default_lr
    except ValueError:
        raise ValueError(f"A phase's epochs must be an integer and its lr a number. Received: {text!r}") from None
    if epochs < 1 or not lr > 0:
        raise ValueError(f"A phase needs epochs >= 1 and lr > 0. Received: {text!r}")
    return trainable, epochs, lr


def training_phases(config) -> list[Phase]:
    """The phases of a `TrainConfig`: its `phases`, the `freeze_epochs` shorthand, or one phase."""
    if config.phases:
        phases, start = [], 0
        for text in config.phases:
            trainable, epochs, lr = parse_phase(text, config.lr)
            phases.append(Phase(trainable, start, start + epochs, lr))
            start += epochs
        return phases
    trainable = parse_trainable(config.trainable)
    if config.freeze_epochs:
        return [Phase("none", 0, config.freeze_epochs, config.lr),
                Phase(trainable, config.freeze_epochs, config.epochs, config.lr)]
    return [Phase(trainable, 0, config.epochs, config.lr)]


def backbone_layer(model):
    """The nested `backbone` model of an architecture, or a ValueError naming the model."""
    try:
        return model.get_layer("backbone")
    except ValueError:
        raise ValueError(f"Phases, freeze_epochs and freeze_batchnorm need an architecture with a backbone; "
                         f"{model.name} has none.") from None


def set_trunk_trainable(model, backbone: str, trainable: str | int, freeze_batchnorm: bool = False) -> None:
    """Opens the trunk's blocks for `trainable` (`all`, `none` or the last N blocks of backbone
    `backbone`); with `freeze_batchnorm` its batch-norm layers stay frozen (inference mode)."""
    import keras

    from visnet.backbones import backbone_info
    from visnet.backbones.base import set_trainable

    trunk = backbone_layer(model)
    set_trainable(trunk, backbone_info(backbone), trainable)  # sets the trunk's own flag too
    if freeze_batchnorm:
        for layer in trunk.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
