"""Everything a training run needs, in one serialisable record (saved as `config.json` in the run)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

SPLITS = ("all", "open-set", "closed-set")
STRATEGIES = ("default", "mirrored", "multiworker")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass
class TrainConfig:
    """A training run's settings. `None` means "the architecture's default".

    Data: `data` (LAYOUT:PATH), `label`, `split` (`open-set`: the protocol's base classes only;
    `closed-set`: its closed-set train ids; `all`: every record, or the `train` split when the
    layout has one), `val` (`classes:F` holds out a fraction F of the classes, `images:F` a
    fraction of each class's images, `none`), `val_max_images`, `check_images`, `cache_images`.

    Model: `arch`, `image_size`, `resize`, `embedding_dim`, `backbone`, `backbone_options`,
    `weights`, `trainable`, `remove_top`, `arch_options`.

    Loss and batches: `loss`, `margin`, `mining`, `top_k`, `distance`, `shots`, `scale`, `p`, `k` (P x K batches;
    for prototypical training P is the ways and K the shots + queries), `batch_size` and
    `p_same` (pair and explicit-triplet batches; also the (image, word) batches of the
    weak-label model).

    Text (the `weakly` architecture): `text_columns` (source columns joined into each record's
    text, for the benchmark, kaggle and csv layouts), `text_languages` (stop-word lists),
    `drop_words` (more words to drop, besides shop words and sizes), `vocabulary_size`,
    `min_word_count`, `negatives`, `close_negatives`, `word_power` (training words are drawn in
    proportion to their image count to this power: 0 uniform over words, 1 as often as they
    occur; see `visnet.data.samplers.WordSampler`), `lexicon` (word-type lexicon file for
    `types > 1`; default: visnet's).

    Optimisation: `epochs`, `freeze_epochs` (first epochs train with the backbone frozen, then
    it is fine-tuned), `phases` (`TRAINABLE:EPOCHS[:LR]` each, e.g. `["none:1:1e-3",
    "3:2:3e-4", "all:3:1e-4"]`: see `visnet.training.phases`), `freeze_batchnorm` (the trunk's
    batch norm keeps its pretrained statistics; None: on for a pretrained trunk). With a
    pretrained trunk and none of `phases`, `freeze_epochs`, `trainable`, the run fine-tunes in
    phases (`visnet.training.builder.with_defaults`), `steps_per_epoch`, `optimizer`, `lr`, `weight_decay`, `schedule`,
    `warmup_epochs`, `augment`, `augmentation`, `seed`, `patience`, `strategy`, `cpu_replicas`,
    `mixed_precision`.
    """

    arch: str = "siamese"
    data: str = ""
    out: str = ""
    label: str | None = None
    split: str = "all"
    val: str = "classes:0.1"
    val_max_images: int = 1000
    check_images: str = "decode"
    cache_images: bool = True
    image_size: tuple[int, int] = (128, 96)
    resize: str = "pad"
    embedding_dim: int | None = None
    backbone: str | None = None
    backbone_options: dict = dataclasses.field(default_factory=dict)
    weights: str | None = None
    trainable: str = "all"
    remove_top: int = 0
    arch_options: dict = dataclasses.field(default_factory=dict)
    loss: str | None = None
    margin: float | None = None
    mining: str | None = None
    top_k: float | None = None
    distance: str | None = None
    shots: int | None = None
    scale: float | None = None
    p: int = 16
    k: int = 4
    batch_size: int = 64
    p_same: float = 0.4
    text_columns: list[str] | None = None
    text_languages: list[str] = dataclasses.field(default_factory=lambda: ["en", "fr"])
    drop_words: list[str] = dataclasses.field(default_factory=list)
    vocabulary_size: int = 30_000
    min_word_count: int = 2
    negatives: int | None = None
    close_negatives: int | None = None
    word_power: float = 0.0
    lexicon: str | None = None
    epochs: int = 10
    freeze_epochs: int = 0
    phases: list[str] | None = None
    freeze_batchnorm: bool | None = None
    steps_per_epoch: int | None = None
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    augment: bool = True
    augmentation: dict = dataclasses.field(default_factory=dict)
    seed: int = 0
    patience: int | None = None
    strategy: str = "default"
    cpu_replicas: int = 1
    mixed_precision: bool = False

    def validate(self) -> TrainConfig:
        """Checks values that need no data; raises a ValueError naming the bad one."""
        def need(condition: bool, message: str) -> None:
            if not condition:
                raise ValueError(message)

        need(bool(self.data), "data is required (LAYOUT:PATH or a path).")
        need(self.split in SPLITS, f"split must be one of {SPLITS}. Received: split={self.split!r}")
        need(self.strategy in STRATEGIES, f"strategy must be one of {STRATEGIES}. Received: strategy={self.strategy!r}")
        need(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}. Received: optimizer={self.optimizer!r}")
        need(self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}. Received: schedule={self.schedule!r}")
        need(self.epochs >= 1, f"epochs must be >= 1. Received: epochs={self.epochs}")
        need(self.lr > 0, f"lr must be > 0. Received: lr={self.lr}")
        need(0 <= self.freeze_epochs < self.epochs,
             f"freeze_epochs must be in [0, epochs). Received: freeze_epochs={self.freeze_epochs}, epochs={self.epochs}")
        if self.phases:
            from visnet.training.phases import training_phases

            phases = training_phases(self)
            need(not self.freeze_epochs, "phases and freeze_epochs cannot both be set: freeze_epochs F is the "
                 "phase none:F followed by the rest.")
            need(phases[-1].end == self.epochs, f"The phases add up to {phases[-1].end} epochs, but epochs={self.epochs}.")
        else:
            from visnet.training.phases import parse_trainable

            parse_trainable(self.trainable)
        need(self.vocabulary_size >= 2, f"vocabulary_size must be >= 2. Received: vocabulary_size={self.vocabulary_size}")
        need(0.0 <= self.word_power <= 1.0, f"word_power must be in [0, 1]. Received: word_power={self.word_power}")
        need(self.min_word_count >= 1, f"min_word_count must be >= 1. Received: min_word_count={self.min_word_count}")
        need(self.p >= 1 and self.k >= 1, f"p and k must be >= 1. Received: p={self.p}, k={self.k}")
        need(self.batch_size >= 2, f"batch_size must be >= 2. Received: batch_size={self.batch_size}")
        need(self.steps_per_epoch is None or self.steps_per_epoch >= 1,
             f"steps_per_epoch must be >= 1. Received: steps_per_epoch={self.steps_per_epoch}")
        need(self.cpu_replicas >= 1, f"cpu_replicas must be >= 1. Received: cpu_replicas={self.cpu_replicas}")
        need(self.val_max_images >= 2, f"val_max_images must be >= 2. Received: {self.val_max_images}")
        need(self.warmup_epochs >= 0, f"warmup_epochs must be >= 0. Received: {self.warmup_epochs}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0. Received: {self.weight_decay}")
        need(self.patience is None or self.patience >= 1, f"patience must be >= 1. Received: {self.patience}")
        mode, _ = parse_val(self.val)
        need(self.patience is None or mode != "none", "patience needs a validation set (val is none).")
        need(self.warmup_epochs == 0 or self.schedule == "cosine",
             f"warmup_epochs needs schedule=cosine. Received: schedule={self.schedule!r}")
        need(self.cpu_replicas == 1 or self.strategy == "mirrored",
             f"cpu_replicas > 1 only applies to strategy=mirrored. Received: strategy={self.strategy!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["image_size"] = list(self.image_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown training settings: {', '.join(unknown)}")
        config = cls(**data)
        config.image_size = tuple(config.image_size)
        return config

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=2)
            handle.write("\n")

    @classmethod
    def load(cls, path: str) -> TrainConfig:
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))


def parse_val(text: str) -> tuple[str, float]:
    """`classes:0.1` -> ("classes", 0.1); `none` -> ("none", 0)."""
    if text == "none":
        return "none", 0.0
    mode, _, fraction = text.partition(":")
    try:
        value = float(fraction)
    except ValueError:
        value = -1.0
    if mode not in ("classes", "images") or not 0 < value < 1:
        raise ValueError(f"val must be classes:F, images:F (0 < F < 1) or none. Received: val={text!r}")
    return mode, value
