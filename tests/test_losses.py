import doctest
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from visnet import losses as losses_module
from visnet.losses import (
    CapsuleMarginLoss,
    ContrastiveLoss,
    HingeLoss,
    PrototypicalLoss,
    TripletLoss,
    losses,
    mine,
)
from visnet.losses import triplet as triplet_module


def distance(a, b, kind="euclidean"):
    squared = float(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return np.sqrt(squared) if kind == "euclidean" else squared


def valid(labels):
    n = len(labels)
    return [(a, p, q) for a, p, q in itertools.product(range(n), repeat=3)
            if a != p and labels[a] == labels[p] and labels[q] != labels[a]]


def brute(x, labels, margin, kind, mining, top_k=0.2):
    """The triplet loss by explicit loops over triplets."""
    d = lambda i, j: distance(x[i], x[j], kind)  # noqa: E731
    loss = lambda t: max(0.0, d(t[0], t[1]) - d(t[0], t[2]) + margin)  # noqa: E731
    triplets = valid(labels)
    if mining == "batch-all":
        values = [loss(t) for t in triplets if loss(t) > 1e-16]
        return np.mean(values) if values else 0.0
    if mining == "top-k":
        values = sorted((loss(t) for t in triplets), reverse=True)
        keep = max(1, int(np.ceil(top_k * len(values))))
        return np.mean(values[:keep]) if values else 0.0
    chosen = []
    for a in range(len(labels)):
        positives = [p for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        negatives = [n for n in range(len(labels)) if labels[n] != labels[a]]
        if not positives or not negatives:
            continue
        if mining == "batch-hard":
            chosen.append((a, max(positives, key=lambda p: d(a, p)), min(negatives, key=lambda n: d(a, n))))
        else:  # semi-hard
            for p in positives:
                farther = [n for n in negatives if d(a, n) > d(a, p)]
                n = min(farther, key=lambda n: d(a, n)) if farther else max(negatives, key=lambda n: d(a, n))
                chosen.append((a, p, n))
    return np.mean([loss(t) for t in chosen]) if chosen else 0.0


@pytest.mark.parametrize("mining", ["batch-all", "batch-hard", "semi-hard", "top-k"])
@pytest.mark.parametrize("kind", ["euclidean", "squared"])
@pytest.mark.parametrize("seed", [0, 1])
def test_triplet_loss_matches_explicit_loops(mining, kind, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 12)
    labels[-1] = 9  # a class with a single image: never an anchor
    x = rng.normal(size=(12, 3)).astype(np.float32)
    loss = TripletLoss(margin=0.5, distance=kind, mining=mining, top_k=0.3)
    expected = brute(x, labels, 0.5, kind, mining, top_k=0.3)
    assert float(loss(labels, x)) == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_explicit_triplets_and_the_visnet_hinge():
    rng = np.random.default_rng(2)
    a, p, n = (rng.normal(size=(5, 4)).astype(np.float32) for _ in range(3))
    batch = np.concatenate([a, p, n])
    expected = np.mean([max(0.0, 1.0 + distance(a[i], p[i]) - distance(a[i], n[i])) for i in range(5)])
    assert float(HingeLoss(gap=1.0, mining="none")(np.zeros(15), batch)) == pytest.approx(expected, rel=1e-5)
    assert float(TripletLoss(margin=1.0, mining="none")(np.zeros(15), batch)) == pytest.approx(expected, rel=1e-5)


# Hand-built 1-D embeddings, labels 0 0 1 1 at positions 0, 0.1, 0.25, 1.0.
POINTS = [[0.0], [0.1], [0.25], [1.0]]
LABELS = [0, 0, 1, 1]


def test_batch_hard_picks_the_farthest_positive_and_nearest_negative():
    a, p, n = mine("batch-hard", POINTS, LABELS)
    assert list(zip(a, p, n)) == [(0, 1, 2), (1, 0, 2), (2, 3, 1), (3, 2, 1)]


def test_semi_hard_picks_the_nearest_farther_negative_or_falls_back():
    a, p, n = mine("semi-hard", POINTS, LABELS)
    # (0,1): negatives farther than .1 are 2 (.25) and 3 (1.0) -> 2.  (1,0): 2 (.15) -> 2.
    # (2,3): no negative beyond .75 -> the farthest, 0 (.25).  (3,2): 1 (.9) and 0 (1.0) -> 1.
    assert list(zip(a, p, n)) == [(0, 1, 2), (1, 0, 2), (2, 3, 0), (3, 2, 1)]


def test_batch_all_and_top_k():
    a, p, n = mine("batch-all", POINTS, LABELS)
    assert len(a) == 8 and set(zip(a, p, n)) == set(valid(LABELS))
    # Losses with margin .2: (2,3,1) = .75-.15+.2 = .8 and (2,3,0) = .75-.25+.2 = .7 are the largest two.
    a, p, n = mine("top-k", POINTS, LABELS, margin=0.2, top_k=0.25)
    assert list(zip(a, p, n)) == [(2, 3, 0), (2, 3, 1)]


def test_gradients_are_finite_at_zero_distance_and_on_tiny_batches():
    x = tf.Variable(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], np.float32))  # exact duplicates
    for loss in [TripletLoss(mining=m) for m in ("batch-all", "batch-hard", "semi-hard", "top-k")] + [
        ContrastiveLoss(layout="all-pairs"), ContrastiveLoss(), PrototypicalLoss(shots=1),
    ]:
        with tf.GradientTape() as tape:
            value = loss(np.array([0, 0, 1, 1]), x)
        grad = tape.gradient(value, x)
        assert np.isfinite(value.numpy()) and np.all(np.isfinite(grad.numpy())), loss.name
    # No valid triplet at all (every class has one image): the loss is 0, not NaN.
    assert float(TripletLoss(mining="batch-hard")([0, 1, 2], np.eye(3, dtype=np.float32))) == 0.0
    assert float(TripletLoss(mining="top-k")([0, 1], np.eye(2, dtype=np.float32))) == 0.0


def test_contrastive_loss_matches_explicit_pairs():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 0, 2, 2, 1])
    expected = np.mean([
        distance(x[i], x[i + 4]) if labels[i] == labels[i + 4] else max(0.0, 1.5 - distance(x[i], x[i + 4]))
        for i in range(4)
    ])
    assert float(ContrastiveLoss(margin=1.5)(labels, x)) == pytest.approx(expected, rel=1e-5)
    pairs = [(i, j) for i in range(8) for j in range(8) if i != j]
    expected_all = np.mean([
        distance(x[i], x[j], "squared") if labels[i] == labels[j] else max(0.0, 1.5 - distance(x[i], x[j], "squared"))
        for i, j in pairs
    ])
    loss = ContrastiveLoss(margin=1.5, distance="squared", layout="all-pairs")
    assert float(loss(labels, x)) == pytest.approx(expected_all, rel=1e-5)


def test_prototypical_loss_matches_a_hand_computation():
    rng = np.random.default_rng(4)
    # Classes 7, 3, 5 with 3, 3 and 2 images, interleaved; shots=2: the last "7" and "3" are queries.
    labels = np.array([7, 3, 7, 5, 3, 5, 7, 3])
    x = rng.normal(size=(8, 4)).astype(np.float32)
    prototypes = {c: x[[i for i in range(8) if labels[i] == c][:2]].mean(axis=0) for c in (7, 3, 5)}
    total = []
    for q in (6, 7):
        logits = np.array([-distance(x[q], prototypes[c], "squared") for c in (7, 3, 5)])
        log_probs = logits - np.log(np.sum(np.exp(logits)))
        total.append(-log_probs[(7, 3, 5).index(labels[q])])
    assert float(PrototypicalLoss(shots=2)(labels, x)) == pytest.approx(np.mean(total), rel=1e-5)
    assert float(PrototypicalLoss(shots=5)(labels, x)) == 0.0  # no query at all


def test_capsule_margin_loss_matches_the_formula():
    lengths = np.array([[0.95, 0.3, 0.05], [0.5, 0.05, 0.2]], np.float32)
    labels = np.array([0, 2])
    row0 = 0 + 0.5 * (0.2**2 + 0)
    row1 = (0.9 - 0.2) ** 2 + 0.5 * ((0.5 - 0.1) ** 2 + 0)
    assert float(CapsuleMarginLoss()(labels, lengths)) == pytest.approx((row0 + row1) / 2, rel=1e-5)


@pytest.mark.parametrize("name, options", [
    ("triplet", {"margin": 0.3, "mining": "top-k", "top_k": 0.1, "distance": "squared"}),
    ("hinge", {"gap": 0.5, "mining": "batch-hard"}),
    ("contrastive", {"margin": 2.0, "layout": "all-pairs"}),
    ("prototypical", {"shots": 3}),
    ("capsule-margin", {"m_plus": 0.8}),
])
def test_registry_and_config_round_trip(name, options):
    loss = losses.get(name, **options)
    config = keras.saving.serialize_keras_object(loss)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
    for key, value in options.items():
        assert getattr(restored, key) == value


def test_hinge_takes_its_gap_as_margin_too():
    assert losses.get("hinge", margin=0.5).gap == 0.5
    with pytest.raises(ValueError, match="hinge uses Euclidean distances"):
        losses.get("hinge", distance="squared")


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="margin=0"):
        TripletLoss(margin=0)
    with pytest.raises(ValueError, match="mining='hardest'"):
        TripletLoss(mining="hardest")
    with pytest.raises(ValueError, match="distance='cosine'"):
        ContrastiveLoss(distance="cosine")
    with pytest.raises(ValueError, match="shots=0"):
        PrototypicalLoss(shots=0)
    with pytest.raises(ValueError, match="Unknown loss: 'arcface'"):
        losses_module.get("arcface")


def test_docstring_examples():
    assert doctest.testmod(triplet_module).failed == 0


def test_normsoftmax_is_a_tempered_softmax_over_cosines():
    from visnet.layers import CosineClassifier
    from visnet.losses import NormSoftmaxLoss

    cosines = np.array([[0.9, 0.1, -0.2], [0.0, 0.5, 0.4]], np.float32)
    labels = np.array([0, 2])
    expected = np.mean([-np.log(np.exp(16 * c[y]) / np.exp(16 * c).sum()) for c, y in zip(cosines, labels)])
    assert float(NormSoftmaxLoss(scale=16)(labels, cosines)) == pytest.approx(expected, rel=1e-5)
    head = CosineClassifier(3)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    out = np.asarray(head(x))
    w = np.asarray(head.proxies)
    manual = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=0, keepdims=True))
    np.testing.assert_allclose(out, manual, rtol=1e-5, atol=1e-6)
    assert CosineClassifier.from_config(head.get_config()).classes == 3
    with pytest.raises(ValueError, match="scale=0"):
        NormSoftmaxLoss(scale=0)
