"""Benchmark protocols: which images train, which are queried, which form few-shot episodes.

A protocol is a JSON file of explicit id lists (the format of
`fashion-products/protocol.json`):

- `classification`: closed-set classification; `classes`, `train_ids`, `test_ids`.
- `open_set`: train on `base_classes` only; evaluate on `novel_classes`. `novel_pool` maps
  each novel class to its ids; `support_ids` / `query_ids` split the pool for retrieval;
  `episodes` gives `ways`, `shots`, `queries_per_class`, `count` and `seed` for N-way K-shot.

`make_protocol` writes one for any dataset, so every layout can be evaluated the same way.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from visnet.data.records import Dataset, SkipReport


@dataclasses.dataclass(frozen=True)
class EpisodeSettings:
    ways: tuple[int, ...] = (5, 10, 16)
    shots: tuple[int, ...] = (1, 5)
    queries_per_class: int = 15
    count: int = 600
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class OpenSetSplits:
    """The datasets of the open-set protocol."""

    base: Dataset  # training images: every image of the base classes
    support: Dataset  # retrieval gallery (novel classes)
    query: Dataset  # retrieval queries (novel classes)
    pool: Dataset  # novel-class images N-way K-shot episodes are drawn from


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A fixed benchmark protocol. See the module docstring for the fields."""

    name: str
    label: str
    image_size_hw: tuple[int, int] | None
    classes: tuple[str, ...]
    train_ids: tuple[str, ...]
    test_ids: tuple[str, ...]
    base_classes: tuple[str, ...]
    novel_classes: tuple[str, ...]
    novel_pool: dict[str, tuple[str, ...]]
    support_ids: tuple[str, ...]
    query_ids: tuple[str, ...]
    episodes: EpisodeSettings = EpisodeSettings()

    # I/O -----------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protocol:
        try:
            closed, open_ = data["classification"], data["open_set"]
            episodes = open_.get("episodes", {})
            size = data.get("image_size_hw")
            return cls(
                name=str(data.get("name", "protocol")),
                label=str(data["label"]),
                image_size_hw=tuple(int(v) for v in size) if size else None,
                classes=tuple(closed["classes"]),
                train_ids=tuple(str(i) for i in closed["train_ids"]),
                test_ids=tuple(str(i) for i in closed["test_ids"]),
                base_classes=tuple(open_["base_classes"]),
                novel_classes=tuple(open_["novel_classes"]),
                novel_pool={c: tuple(str(i) for i in ids) for c, ids in open_["novel_pool"].items()},
                support_ids=tuple(str(i) for i in open_["support_ids"]),
                query_ids=tuple(str(i) for i in open_["query_ids"]),
                episodes=EpisodeSettings(
                    ways=tuple(int(w) for w in episodes.get("ways", (5,))),
                    shots=tuple(int(s) for s in episodes.get("shots", (1, 5))),
                    queries_per_class=int(episodes.get("queries_per_class", 15)),
                    count=int(episodes.get("count", 600)),
                    seed=int(episodes.get("seed", 0)),
                ),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"Not a valid protocol: missing or bad field {error}") from None

    def __post_init__(self):
        problems = []
        if set(self.base_classes) & set(self.novel_classes):
            problems.append(f"classes both base and novel: {sorted(set(self.base_classes) & set(self.novel_classes))[:5]}")
        if set(self.support_ids) & set(self.query_ids):
            problems.append(f"ids both support and query: {sorted(set(self.support_ids) & set(self.query_ids))[:5]}")
        if set(self.train_ids) & set(self.test_ids):
            problems.append(f"ids both closed-set train and test: {sorted(set(self.train_ids) & set(self.test_ids))[:5]}")
        if set(self.novel_pool) - set(self.novel_classes):
            problems.append(f"novel_pool classes that are not novel: {sorted(set(self.novel_pool) - set(self.novel_classes))[:5]}")
        if problems:
            raise ValueError("Not a valid protocol: " + "; ".join(problems))

    @classmethod
    def load(cls, path: str) -> Protocol:
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
        try:
            return cls.from_dict(data)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "image_size_hw": list(self.image_size_hw) if self.image_size_hw else None,
            "classification": {
                "classes": list(self.classes),
                "train_ids": list(self.train_ids),
                "test_ids": list(self.test_ids),
            },
            "open_set": {
                "base_classes": list(self.base_classes),
                "novel_classes": list(self.novel_classes),
                "novel_pool": {c: list(ids) for c, ids in self.novel_pool.items()},
                "support_ids": list(self.support_ids),
                "query_ids": list(self.query_ids),
                "episodes": dataclasses.asdict(self.episodes),
            },
        }

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=1)
            handle.write("\n")

    # Splits --------------------------------------------------------------------------------
    def closed_set(self, dataset: Dataset, missing: str = "error") -> tuple[Dataset, Dataset]:
        """(train, test) datasets of the closed-set classification protocol."""
        return (
            _select(dataset, self.train_ids, "closed-set train", missing),
            _select(dataset, self.test_ids, "closed-set test", missing),
        )

    def open_set(self, dataset: Dataset, missing: str = "error") -> OpenSetSplits:
        """The base (training), support, query and pool datasets of the open-set protocol."""
        pool_ids = [i for ids in self.novel_pool.values() for i in ids]
        return OpenSetSplits(
            base=dataset.where(labels=self.base_classes),
            support=_select(dataset, self.support_ids, "open-set support", missing),
            query=_select(dataset, self.query_ids, "open-set query", missing),
            pool=_select(dataset, pool_ids, "novel pool", missing),
        )


def _select(dataset: Dataset, ids: Sequence[str], description: str, missing: str) -> Dataset:
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip'. Received: missing={missing!r}")
    if missing == "skip":
        known = set(dataset.ids)
        report = SkipReport()
        for i in ids:
            if i not in known:
                report.add(f"{description} id not in the dataset", i)
        selected = dataset.select([i for i in ids if i in known], description)
        selected.report.extend(report)
        return selected
    return dataset.select(ids, description)


def make_protocol(
    dataset: Dataset,
    name: str = "protocol",
    label: str = "label",
    min_images: int = 10,
    test_fraction: float = 0.2,
    novel_fraction: float = 0.15,
    pool_max: int = 60,
    episodes: EpisodeSettings = EpisodeSettings(ways=(5,), shots=(1, 5)),
    image_size_hw: tuple[int, int] | None = None,
    seed: int = 0,
) -> Protocol:
    """Builds a protocol for any dataset, the way `fashion-products/protocol.json` was built.

    When the records carry a retrieval split (In-Shop's query / gallery, Street2Shop's street
    queries and shop gallery), the open set follows it: its queries and gallery are the
    support and query sets, their classes are the novel ones, and the few-shot pool is drawn
    from them (ways that no class count allows are dropped instead of failing).

    Args:
        dataset: `Dataset`. All labelled images.
        name, label: str. Recorded in the protocol (`label` names the label column).
        min_images: int. Closed-set classes need at least this many images.
        test_fraction: float. Closed-set test share, per class.
        novel_fraction: float. Share of the classes held out as novel (open-set); at least
            `max(episodes.ways)` classes, chosen among those with enough images for the
            largest episode (`max(shots) + queries_per_class`).
        pool_max: int. At most this many images per novel class form its pool; the pool is
            split half/half into support and query.
        episodes: `EpisodeSettings`. Ways larger than the number of novel classes are dropped.
        image_size_hw: (int, int) or None. Recorded image size.
        seed: int. Every random choice derives from it.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1). Received: test_fraction={test_fraction}")
    if not 0 < novel_fraction < 1:
        raise ValueError(f"novel_fraction must be in (0, 1). Received: novel_fraction={novel_fraction}")
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[str]] = {}
    for record in dataset:
        by_class.setdefault(record.label, []).append(record.id)

    retrieval_split = any(record.split in ("query", "gallery") for record in dataset)
    closed_pool = by_class
    if retrieval_split:  # the closed set then uses the training images only
        closed_pool = {}
        for record in dataset:
            if record.split not in ("query", "gallery"):
                closed_pool.setdefault(record.label, []).append(record.id)
    classes = sorted(c for c, ids in closed_pool.items() if len(ids) >= min_images)
    train_ids, test_ids = [], []
    for c in classes:
        ids = [str(i) for i in rng.permutation(closed_pool[c])]
        n_test = max(1, int(round(len(ids) * test_fraction)))
        test_ids += ids[:n_test]
        train_ids += ids[n_test:]

    needed = max(episodes.shots) + episodes.queries_per_class
    if retrieval_split:
        return _protocol_from_splits(dataset, name, label, classes, train_ids, test_ids, pool_max,
                                     episodes, image_size_hw, needed, rng)
    eligible = sorted(c for c, ids in by_class.items() if len(ids) >= needed)
    limit = min(len(eligible), len(by_class) - 1)  # keep at least one base class
    feasible = [w for w in episodes.ways if w <= limit]
    if not feasible:
        raise ValueError(
            f"{dataset.name} has {len(eligible)} classes with at least {needed} images "
            f"(shots {max(episodes.shots)} + queries {episodes.queries_per_class}) and "
            f"{len(by_class)} classes in all: too few for {min(episodes.ways)}-way episodes "
            "with base classes left for training."
        )
    n_novel = min(limit, max(max(feasible), int(round(novel_fraction * len(by_class)))))
    novel = sorted(rng.choice(eligible, size=n_novel, replace=False).tolist())
    pool, support, query = {}, [], []
    for c in novel:
        ids = [str(i) for i in rng.permutation(by_class[c])][:pool_max]
        pool[c] = tuple(ids)
        half = (len(ids) + 1) // 2
        support += ids[:half]
        query += ids[half:]
    return Protocol(
        name=name,
        label=label,
        image_size_hw=image_size_hw,
        classes=tuple(classes),
        train_ids=tuple(train_ids),
        test_ids=tuple(test_ids),
        base_classes=tuple(sorted(set(by_class) - set(novel))),
        novel_classes=tuple(novel),
        novel_pool=pool,
        support_ids=tuple(support),
        query_ids=tuple(query),
        episodes=dataclasses.replace(episodes, ways=tuple(feasible)),
    )


def _protocol_from_splits(dataset, name, label, classes, train_ids, test_ids, pool_max, episodes,
                          image_size_hw, needed, rng) -> Protocol:
    query = [r.id for r in dataset if r.split == "query"]
    gallery = [r.id for r in dataset if r.split == "gallery"]
    if not query or not gallery:
        raise ValueError(f"{dataset.name} has {len(query)} query and {len(gallery)} gallery images: need both.")
    novel: dict[str, list[str]] = {}
    for record in dataset:
        if record.split in ("query", "gallery"):
            novel.setdefault(record.label, []).append(record.id)
    pool = {c: tuple(str(i) for i in rng.permutation(ids)[:pool_max]) for c, ids in sorted(novel.items())}
    eligible = sum(len(ids) >= needed for ids in pool.values())
    return Protocol(
        name=name, label=label, image_size_hw=image_size_hw, classes=tuple(classes),
        train_ids=tuple(train_ids), test_ids=tuple(test_ids),
        base_classes=tuple(sorted({r.label for r in dataset} - set(novel))),
        novel_classes=tuple(sorted(novel)), novel_pool=pool,
        support_ids=tuple(gallery), query_ids=tuple(query),
        episodes=dataclasses.replace(episodes, ways=tuple(w for w in episodes.ways if w <= eligible)),
    )


def find_protocol(root: str) -> str | None:
    """The `protocol.json` of a benchmark folder (or the file itself), if there is one."""
    if os.path.isfile(root) and root.endswith(".json"):
        return root
    candidate = os.path.join(root, "protocol.json")
    return candidate if os.path.isfile(candidate) else None
