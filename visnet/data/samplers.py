"""Index samplers: class-balanced P x K batches, pairs, triplets and N-way K-shot episodes.

Samplers work on an array of labels and return record indices, so they know nothing of images
or TensorFlow and can be tested alone. Every draw derives from `(seed, epoch)` or
`(seed, episode)`: the same seed gives the same batches, and a resumed run can ask for
epoch 7 without replaying epochs 0-6.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np


class NotEnoughClassesError(ValueError):
    """The labels have too few classes (with enough images) for the requested batches or episodes."""


def _groups(labels: Sequence) -> tuple[np.ndarray, list[np.ndarray]]:
    """Distinct labels (sorted) and the record indices of each."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D sequence. Received shape {labels.shape}")
    classes, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(classes)))[:-1]
    return classes, np.split(order, bounds)


class PKSampler:
    """Batches of exactly P classes x K images (Hermans et al., "In Defense of the Triplet Loss").

    Args:
        labels: sequence. The label of every record.
        p: int. Classes per batch.
        k: int. Images per class in a batch; a class with fewer than K images is sampled with
            replacement.
        batches_per_epoch: int or None. Defaults to ceil(classes / P), so every class appears
            once per epoch; more batches make more passes over the classes.
        seed: int.

    Every pass over the classes visits all of them in a random order; a last group with fewer
    than P classes is completed with other classes drawn at random. Within a class, images are
    drawn without replacement, cycling through all of them before any repeats within an epoch
    (each epoch starts a fresh cycle, so epochs can be drawn independently).
    """

    def __init__(self, labels: Sequence, p: int, k: int, batches_per_epoch: int | None = None, seed: int = 0):
        self.classes, self.members = _groups(labels)
        if p < 1 or k < 1:
            raise ValueError(f"p and k must be >= 1. Received: p={p}, k={k}")
        if p > len(self.classes):
            raise NotEnoughClassesError(
                f"p={p} classes per batch, but the labels have only {len(self.classes)} classes."
            )
        passes_default = -(-len(self.classes) // p)
        if batches_per_epoch is not None and batches_per_epoch < 1:
            raise ValueError(f"batches_per_epoch must be >= 1. Received: {batches_per_epoch}")
        self.p, self.k, self.seed = p, k, seed
        self.batches_per_epoch = batches_per_epoch or passes_default

    def __len__(self) -> int:
        return self.batches_per_epoch

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def _class_groups(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        n = len(self.classes)
        while True:
            order = rng.permutation(n)
            for start in range(0, n, self.p):
                group = order[start : start + self.p]
                if len(group) < self.p:
                    others = np.setdiff1d(np.arange(n), group)
                    group = np.concatenate([group, rng.choice(others, self.p - len(group), replace=False)])
                yield group

    def epoch(self, epoch: int) -> np.ndarray:
        """Record indices of one epoch, shape (batches_per_epoch, P * K)."""
        rng = np.random.default_rng([self.seed, epoch])
        queues: dict[int, list[int]] = {}

        def draw(c: int) -> np.ndarray:
            members = self.members[c]
            if len(members) < self.k:
                return rng.choice(members, self.k, replace=True)
            queue = queues.setdefault(c, [])
            if len(queue) < self.k:
                fresh = [m for m in rng.permutation(members) if m not in queue]
                queue.extend(fresh)
            taken, queues[c] = queue[: self.k], queue[self.k :]
            return np.asarray(taken)

        groups = self._class_groups(rng)
        batches = [np.concatenate([draw(c) for c in next(groups)]) for _ in range(self.batches_per_epoch)]
        return np.stack(batches).astype(np.int64)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.epoch(0))


class PairSampler:
    """Pairs for contrastive training: same class with probability `p_same`, else different.

    Args:
        labels: sequence. The label of every record.
        pairs_per_epoch: int. Pairs drawn per epoch.
        p_same: float. Probability that a pair is positive (the Navee report used 0.4).
        seed: int.

    Positive pairs are two different images of a class with at least two images.
    """

    def __init__(self, labels: Sequence, pairs_per_epoch: int, p_same: float = 0.4, seed: int = 0):
        self.classes, self.members = _groups(labels)
        if not 0 <= p_same <= 1:
            raise ValueError(f"p_same must be in [0, 1]. Received: p_same={p_same}")
        if pairs_per_epoch < 1:
            raise ValueError(f"pairs_per_epoch must be >= 1. Received: pairs_per_epoch={pairs_per_epoch}")
        self.positive_classes = np.array([c for c, m in enumerate(self.members) if len(m) >= 2])
        if p_same > 0 and not len(self.positive_classes):
            raise ValueError("p_same > 0 needs a class with at least 2 images; every class has 1.")
        if p_same < 1 and len(self.classes) < 2:
            raise ValueError("Negative pairs need at least 2 classes.")
        self.pairs_per_epoch, self.p_same, self.seed = pairs_per_epoch, p_same, seed

    def __len__(self) -> int:
        return self.pairs_per_epoch

    def epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(first, second, same) arrays of length `pairs_per_epoch`; `same` is 1 for positives."""
        rng = np.random.default_rng([self.seed, epoch])
        same = (rng.random(self.pairs_per_epoch) < self.p_same).astype(np.int64)
        first = np.empty(self.pairs_per_epoch, np.int64)
        second = np.empty(self.pairs_per_epoch, np.int64)
        n = len(self.classes)
        for i, positive in enumerate(same):
            if positive:
                members = self.members[rng.choice(self.positive_classes)]
                first[i], second[i] = rng.choice(members, 2, replace=False)
            else:
                a, b = rng.choice(n, 2, replace=False)
                first[i], second[i] = rng.choice(self.members[a]), rng.choice(self.members[b])
        return first, second, same


class TripletSampler:
    """(anchor, positive, negative) index triplets with random negatives.

    Args:
        labels: sequence. The label of every record.
        triplets_per_epoch: int.
        seed: int.

    Anchors come from classes with at least two images, so the positive is a different image.
    """

    def __init__(self, labels: Sequence, triplets_per_epoch: int, seed: int = 0):
        self.classes, self.members = _groups(labels)
        if triplets_per_epoch < 1:
            raise ValueError(f"triplets_per_epoch must be >= 1. Received: {triplets_per_epoch}")
        self.anchor_classes = np.array([c for c, m in enumerate(self.members) if len(m) >= 2])
        if not len(self.anchor_classes):
            raise ValueError("Triplets need a class with at least 2 images; every class has 1.")
        if len(self.classes) < 2:
            raise ValueError("Triplets need at least 2 classes.")
        self.triplets_per_epoch, self.seed = triplets_per_epoch, seed

    def __len__(self) -> int:
        return self.triplets_per_epoch

    def epoch(self, epoch: int) -> np.ndarray:
        """Array of shape (triplets_per_epoch, 3): anchor, positive, negative indices."""
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.classes)
        out = np.empty((self.triplets_per_epoch, 3), np.int64)
        for i in range(self.triplets_per_epoch):
            c = rng.choice(self.anchor_classes)
            out[i, :2] = rng.choice(self.members[c], 2, replace=False)
            other = rng.integers(n - 1)
            other += other >= c
            out[i, 2] = rng.choice(self.members[other])
        return out


@dataclasses.dataclass(frozen=True)
class Episode:
    """One N-way K-shot task. `*_labels` are episode-local class numbers 0..N-1."""

    classes: np.ndarray  # the N original labels, in episode order
    support: np.ndarray  # record indices, N * K, grouped by class
    support_labels: np.ndarray
    query: np.ndarray  # record indices, N * Q
    query_labels: np.ndarray


class EpisodeSampler:
    """N-way K-shot episodes: N classes, K support and Q query images each, all distinct.

    Args:
        labels: sequence. The label of every record.
        ways: int. N, classes per episode.
        shots: int. K, support images per class.
        queries: int. Q, query images per class.
        episodes: int. Episodes per pass.
        seed: int. Episode e is drawn from (seed, e).
    """

    def __init__(self, labels: Sequence, ways: int, shots: int, queries: int, episodes: int = 600, seed: int = 0):
        self.classes, self.members = _groups(labels)
        if ways < 2 or shots < 1 or queries < 1 or episodes < 1:
            raise ValueError(
                "Need ways >= 2, shots >= 1, queries >= 1, episodes >= 1. "
                f"Received: ways={ways}, shots={shots}, queries={queries}, episodes={episodes}"
            )
        self.eligible = np.array([c for c, m in enumerate(self.members) if len(m) >= shots + queries])
        if seed < 0:
            raise ValueError(f"seed must be >= 0. Received: seed={seed}")
        if len(self.eligible) < ways:
            raise NotEnoughClassesError(
                f"{ways}-way {shots}-shot episodes with {queries} queries per class need {ways} classes "
                f"with at least {shots + queries} images; only {len(self.eligible)} of "
                f"{len(self.classes)} classes have that many."
            )
        self.ways, self.shots, self.queries, self.episodes, self.seed = ways, shots, queries, episodes, seed

    def __len__(self) -> int:
        return self.episodes

    def episode(self, index: int) -> Episode:
        rng = np.random.default_rng([self.seed, index])
        chosen = rng.choice(self.eligible, self.ways, replace=False)
        support, query = [], []
        for c in chosen:
            picked = rng.choice(self.members[c], self.shots + self.queries, replace=False)
            support.append(picked[: self.shots])
            query.append(picked[self.shots :])
        return Episode(
            classes=self.classes[chosen],
            support=np.concatenate(support).astype(np.int64),
            support_labels=np.repeat(np.arange(self.ways), self.shots),
            query=np.concatenate(query).astype(np.int64),
            query_labels=np.repeat(np.arange(self.ways), self.queries),
        )

    def __iter__(self) -> Iterator[Episode]:
        return (self.episode(i) for i in range(self.episodes))


class WordSampler:
    """Word sampling for weak image-text training: draw a word from the vocabulary, then an
    image whose bag of words holds it; the word is the image's target.

    With `power` 0 (the default) words are drawn uniformly. Drawing words, not images, counters
    the imbalance of a catalogue's text: "men" or "blue" in every other name would otherwise swamp
    "paisley" (Corbière, internship report, sec. 2.2). With `power` a, a word is drawn with
    probability proportional to (images holding it) ** a: 1 draws every (image, word) pair of
    the catalogue equally often, as image sampling does, and trains the frequent words that tags
    are mostly made of; values between trade one for the other. The head then learns
    p(word | image) up to a factor count ** (a - 1), which tagging puts back
    (`visnet.tagging.WordModel`).

    Args:
        bags: sequence of int arrays. The word ids of each record's text.
        batch_size: int. (image, word) pairs per batch.
        batches_per_epoch: int or None. Defaults to about one image per record per epoch.
        seed: int.
        power: float in [0, 1]. Words are drawn in proportion to their image count to this power.

    Words no record holds can never be drawn; images with an empty bag are never used.
    `epoch(e)` gives the record indices, `targets(e)` the word of each (same shape).
    """

    def __init__(self, bags: Sequence[np.ndarray], batch_size: int, batches_per_epoch: int | None = None,
                 seed: int = 0, power: float = 0.0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
        if not 0.0 <= power <= 1.0:
            raise ValueError(f"power must be in [0, 1]. Received: power={power}")
        records = np.concatenate([np.full(len(b), i, np.int64) for i, b in enumerate(bags)] or [np.zeros(0, np.int64)])
        words = np.concatenate([np.asarray(b, np.int64) for b in bags] or [np.zeros(0, np.int64)])
        if not len(words):
            raise ValueError("Every bag of words is empty: there is no word to sample.")
        order = np.lexsort((records, words))
        self.words, starts = np.unique(words[order], return_index=True)
        self._members = np.split(records[order], starts[1:])
        weights = np.array([len(m) for m in self._members], np.float64) ** power
        self._p = weights / weights.sum()
        self.power = power
        if batches_per_epoch is not None and batches_per_epoch < 1:
            raise ValueError(f"batches_per_epoch must be >= 1. Received: {batches_per_epoch}")
        self.batch_size, self.seed = batch_size, seed
        with_words = int(np.sum([len(b) > 0 for b in bags]))
        self.batches_per_epoch = batches_per_epoch or max(1, with_words // batch_size)
        self._last: tuple = (None, None)  # (epoch, draws): epoch() and targets() share one draw

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _draw(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._last[0] == epoch:
            return self._last[1]
        rng = np.random.default_rng([self.seed, epoch, 11])
        n = self.batches_per_epoch * self.batch_size
        picked = rng.integers(0, len(self.words), n) if self.power == 0 else rng.choice(len(self.words), n, p=self._p)
        images = np.array([self._members[w][rng.integers(len(self._members[w]))] for w in picked], np.int64)
        shape = (self.batches_per_epoch, self.batch_size)
        self._last = (epoch, (images.reshape(shape), self.words[picked].reshape(shape)))
        return self._last[1]

    def epoch(self, epoch: int) -> np.ndarray:
        """Record indices, shape (batches_per_epoch, batch_size)."""
        return self._draw(epoch)[0]

    def targets(self, epoch: int) -> np.ndarray:
        """The word each drawn record must predict, same shape as `epoch(epoch)`."""
        return self._draw(epoch)[1]
