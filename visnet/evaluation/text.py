"""Measures of the weak-label image-text model: tag precision, word triplets, text -> image recall.

All take plain arrays, so they test alone against hand-computed cases.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def tag_precision(scores: np.ndarray, bags: Sequence[np.ndarray], ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Precision@k of the top-k scored words against each image's own words.

    Args:
        scores: (n, K) word scores per image.
        bags: n arrays of the word ids of each image's text. Images with an empty bag are
            left out (nothing to hit).
        ks: cut-offs.

    Returns {k: mean over images of |top-k ∩ bag| / k}.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or len(scores) != len(bags):
        raise ValueError(f"scores must be (n, K) with one row per bag. Received {scores.shape} for {len(bags)} bags")
    keep = [i for i, b in enumerate(bags) if len(b)]
    if not keep:
        raise ValueError("No image has a word in the vocabulary: precision is undefined.")
    kmax = max(ks)
    top = np.argsort(-scores[keep], axis=1, kind="stable")[:, :kmax]
    hits = np.array([np.isin(top[j], bags[i]) for j, i in enumerate(keep)])
    return {k: float(hits[:, :k].sum(axis=1).mean() / k) for k in ks}


def frequency_scores(counts: np.ndarray, n: int) -> np.ndarray:
    """The frequency baseline: every image gets the training counts as word scores."""
    return np.tile(np.asarray(counts, dtype=np.float64), (n, 1))


def word_triplet_accuracy(word_vectors: np.ndarray, triplets: np.ndarray) -> float:
    """Share of (word, closer, farther) triplets where cos(word, closer) > cos(word, farther)."""
    triplets = np.asarray(triplets)
    if triplets.ndim != 2 or triplets.shape[1] != 3 or not len(triplets):
        raise ValueError(f"triplets must be a non-empty (m, 3) array of word ids. Received shape {triplets.shape}")
    w = np.asarray(word_vectors, dtype=np.float64)
    w = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    closer = np.sum(w[triplets[:, 0]] * w[triplets[:, 1]], axis=1)
    farther = np.sum(w[triplets[:, 0]] * w[triplets[:, 2]], axis=1)
    return float(np.mean(closer > farther))


def _triplets(groups: dict, count: int, seed: int, what: str) -> np.ndarray:
    """(word, word of the same group, word of another group) triplets from groups of word ids."""
    groups = {g: np.asarray(ids) for g, ids in groups.items() if len(ids)}
    names = sorted(g for g in groups if len(groups[g]) >= 2)  # groups that give a word and a closer one
    if not names or len(groups) < 2:
        raise ValueError(f"Word triplets need two {what}, one of them with 2+ vocabulary words.")
    rng = np.random.default_rng(seed)
    everyone = {g: np.concatenate([ids for o, ids in groups.items() if o != g]) for g in names}
    out = []
    for _ in range(count):
        g = names[rng.integers(len(names))]
        word, closer = rng.choice(groups[g], 2, replace=False)
        out.append((word, closer, rng.choice(everyone[g])))
    return np.array(out, dtype=np.int64)


def lexicon_triplets(word_types: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """(word, a word of the same lexicon type, a word of another type) triplets, e.g. (navy, red, jeans).

    `word_types`: the lexicon type of each vocabulary word, -1 for untyped words (never used).
    """
    word_types = np.asarray(word_types)
    groups = {int(t): np.flatnonzero(word_types == t) for t in np.unique(word_types[word_types >= 0])}
    return _triplets(groups, count, seed, "lexicon types")


def label_triplets(bags, labels, count: int, seed: int = 0, min_count: int = 5, purity: float = 0.6) -> np.ndarray:
    """(word, a word naming the same kind of product, a word naming another) triplets, from labelled texts.

    A word belongs to the label (e.g. articleType) of at least `purity` of the images whose
    text holds it, if it occurs `min_count` times or more: "dial" and "chronograph" go with
    Watches, "heels" and "stilettos" with Heels. Words spread over labels (colours, brands
    with many products) are left out.
    """
    labels = np.asarray(labels)
    counts: dict[int, dict] = {}
    for bag, label in zip(bags, labels):
        for word in bag:
            per = counts.setdefault(int(word), {})
            per[label] = per.get(label, 0) + 1
    groups: dict = {}
    for word, per in counts.items():
        total = sum(per.values())
        label, top = max(per.items(), key=lambda item: item[1])
        if total >= min_count and top >= purity * total:
            groups.setdefault(label, []).append(word)
    return _triplets({g: sorted(ids) for g, ids in groups.items()}, count, seed, "labels")


def text_recall(query_scores: np.ndarray, query_labels: Sequence, gallery_labels: Sequence,
                ks: Sequence[int] = (1, 10), exclude: np.ndarray | None = None) -> dict[int, float]:
    """Recall@k of text -> image search: a query hits when a top-k image shares its label.

    Args:
        query_scores: (q, n) score of each gallery image for each query (higher is better).
        query_labels, gallery_labels: labels (e.g. articleType).
        ks: cut-offs.
        exclude: optional (q, n) bool mask of pairs left out (a query's own product photo).
    """
    scores = np.array(query_scores, dtype=np.float64)
    if exclude is not None:
        scores[np.asarray(exclude, bool)] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, : max(ks)]
    gallery_labels = np.asarray(gallery_labels)
    match = gallery_labels[order] == np.asarray(query_labels)[:, None]
    return {k: float(np.mean(match[:, :k].any(axis=1))) for k in ks}
