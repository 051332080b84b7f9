"""Search spaces: what `python -m tuning.search` tunes for each architecture (KerasTuner hyperparameters).

A space is a function `(hp, config) -> overrides`: it declares hyperparameters on `hp` and
returns the `TrainConfig` fields they set. The spaces cover what the papers tuned: learning
rate, margin, embedding dimension d, mining strategy and its top-k share, `p_same` of pair
batches, how much of the trunk is unfrozen, capsule dimension and routing iterations, and the
number of negatives of the weak-label model.

`narrowed(hp, entries)` registers entries in advance, which fixes or narrows them for the
search (`--fixed margin=0.2`, `--space space.json`):

    {"lr": {"min": 3e-4, "max": 3e-3, "sampling": "log"},   # a narrower float range
     "embedding_dim": [64, 128],                              # a choice
     "margin": 0.2}                                          # a fixed value
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from visnet.registry import Registry

spaces = Registry("search space")


def _common(hp, config) -> dict:
    """Every architecture: learning rate and embedding size."""
    return {"lr": hp.Float("lr", 1e-4, 1e-2, sampling="log"),
            "embedding_dim": hp.Choice("embedding_dim", [64, 128, 256])}


def _trunk(hp, config) -> dict:
    """How much of a pretrained trunk is fine-tuned (from scratch, everything trains)."""
    if not config.weights:
        return {}
    return {"trainable": hp.Choice("trainable", ["all", "2", "1"])}


def _mining(hp, config) -> dict:
    mining = hp.Choice("mining", ["semi-hard", "batch-hard", "top-k"])
    overrides = {"mining": mining}
    with hp.conditional_scope("mining", ["top-k"]):  # only drawn (and reported) when it is used
        top_k = hp.Float("top_k", 0.05, 0.5)
    if mining == "top-k":
        overrides["top_k"] = top_k
    return overrides


@spaces.register("siamese")
def siamese(hp, config) -> dict:
    overrides = {**_common(hp, config), **_trunk(hp, config)}
    loss = hp.Choice("loss", ["triplet", "contrastive"])
    overrides["loss"] = loss
    overrides["margin"] = hp.Float("margin", 0.05, 1.0, sampling="log")
    with hp.conditional_scope("loss", ["triplet"]):
        mining = _mining(hp, config)
    with hp.conditional_scope("loss", ["contrastive"]):
        p_same = hp.Float("p_same", 0.2, 0.6, step=0.1)
    if loss == "triplet":
        overrides.update(mining)
    else:
        overrides["p_same"] = p_same
    return overrides


@spaces.register("visnet")
def visnet(hp, config) -> dict:
    return {**_common(hp, config), **_trunk(hp, config), "margin": hp.Float("margin", 0.1, 2.0, sampling="log"),
            **_mining(hp, config)}


@spaces.register("capsule")
def capsule(hp, config) -> dict:
    overrides = {"lr": hp.Float("lr", 1e-4, 1e-2, sampling="log"),
                 "embedding_dim": hp.Choice("embedding_dim", [64, 128]),
                 "margin": hp.Float("margin", 0.05, 1.0, sampling="log"), **_mining(hp, config)}
    overrides["arch_options"] = {**config.arch_options, "capsule_dim": hp.Choice("capsule_dim", [4, 8, 16]),
                                 "routings": hp.Int("routings", 1, 4)}
    return overrides


@spaces.register("hybrid")
def hybrid(hp, config) -> dict:
    return {**_common(hp, config), **_trunk(hp, config), "scale": hp.Float("scale", 8.0, 32.0, sampling="log")}


@spaces.register("protonet")
def protonet(hp, config) -> dict:
    return {"lr": hp.Float("lr", 1e-4, 1e-2, sampling="log"), **_trunk(hp, config),
            "shots": hp.Int("shots", 1, max(1, config.k - 1))}


@spaces.register("weakly")
def weakly(hp, config) -> dict:
    return {**_common(hp, config), **_trunk(hp, config), "negatives": hp.Int("negatives", 20, 200, step=20),
            "close_negatives": hp.Int("close_negatives", 0, 10, step=5)}


def space(arch: str) -> Callable:
    """The search space of an architecture (a ValueError listing the spaces when there is none)."""
    return spaces.lookup(arch)


def conditions(arch: str, config) -> dict[str, list[tuple[str, list]]]:
    """Each hyperparameter of an architecture's space and the conditions it is drawn under
    (e.g. top_k: [("mining", ["top-k"])]), found by declaring the space on a scratch object."""
    import keras_tuner

    probe = keras_tuner.HyperParameters()
    space(arch)(probe, config)
    return {hp.name: [(c.name, list(c.values)) for c in hp.conditions] for hp in probe.space}


def narrowed(hp, entries: Mapping[str, Any], scopes: Mapping[str, list] | None = None):
    """Registers `entries` on `hp` before the space declares them: a value fixes a hyperparameter,
    a list makes it a choice, a dict `{"min", "max"[, "step"][, "sampling"]}` a narrower range.

    `scopes` (from `conditions`) registers a conditional hyperparameter under its conditions, as
    the space declares it (a fixed top_k applies when mining is top-k).
    """
    import contextlib

    for name, entry in entries.items():
        with contextlib.ExitStack() as stack:
            for parent, values in (scopes or {}).get(name, []):
                stack.enter_context(hp.conditional_scope(parent, values))
            _register(hp, name, entry)
    return hp


def _register(hp, name: str, entry: Any) -> None:
    """Declares one fixed or narrowed entry."""
    if isinstance(entry, Mapping):
        unknown = set(entry) - {"min", "max", "step", "sampling"}
        if unknown or not {"min", "max"} <= set(entry):
            raise ValueError(f"A range needs min and max (and optionally step, sampling). Received: "
                             f"{name}={dict(entry)!r}")
        low, high = entry["min"], entry["max"]
        if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or low > high:
            raise ValueError(f"{name}: min and max must be numbers with min <= max. Received: {dict(entry)!r}")
        if isinstance(low, int) and isinstance(high, int) and "sampling" not in entry:
            hp.Int(name, low, high, step=entry.get("step", 1))
        else:
            hp.Float(name, float(low), float(high), step=entry.get("step"),
                     sampling=entry.get("sampling", "linear"))
    elif isinstance(entry, (list, tuple)):
        if not entry:
            raise ValueError(f"{name}: a choice needs at least one value.")
        hp.Choice(name, list(entry))
    else:
        hp.Fixed(name, entry)
