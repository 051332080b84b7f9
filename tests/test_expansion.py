"""Query expansion and database-side augmentation against a brute-force, one-vector-at-a-time reference."""

import numpy as np
import pytest

from visnet.evaluation.retrieval import retrieval_metrics
from visnet.index.expansion import Expansion, database_augmentation, query_expansion


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _reference_expand(vector, gallery, k, alpha, include_vector):
    """One vector: its k nearest gallery rows by cosine (ties to the earlier row), weighted sum, normalised."""
    scores = [float(np.dot(vector, g)) for g in gallery]
    nearest = sorted(range(len(gallery)), key=lambda j: (-scores[j], j))[:k]
    total = vector.astype(np.float64) if include_vector else np.zeros(len(vector))
    for j in nearest:
        total = total + max(scores[j], 0.0) ** alpha * gallery[j]
    return total / np.linalg.norm(total)


@pytest.mark.parametrize("k,alpha", [(1, 0.0), (3, 0.0), (4, 3.0), (50, 1.0)])
def test_dba_and_qe_equal_the_reference(k, alpha):
    rng = np.random.default_rng(k)
    gallery = _unit(rng.normal(size=(40, 6))).astype(np.float32)
    queries = _unit(rng.normal(size=(7, 6))).astype(np.float32)
    dba = database_augmentation(gallery, k, alpha)
    expected = np.stack([_reference_expand(g, gallery, k, alpha, include_vector=False) for g in gallery])
    np.testing.assert_allclose(dba, expected, atol=1e-5)
    qe = query_expansion(queries, dba, k, alpha)
    expected = np.stack([_reference_expand(q, dba, k, alpha, include_vector=True) for q in queries])
    np.testing.assert_allclose(qe, expected, atol=1e-5)
    assert dba.dtype == qe.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(qe, axis=1), 1.0, rtol=1e-5)


def test_dba_of_one_neighbour_and_no_expansion_change_nothing():
    rng = np.random.default_rng(0)
    gallery = _unit(rng.normal(size=(20, 4))).astype(np.float32)
    queries = _unit(rng.normal(size=(3, 4))).astype(np.float32)
    np.testing.assert_allclose(database_augmentation(gallery, 1), gallery, atol=1e-6)
    q, g = Expansion().apply(queries, gallery)
    assert q is queries and g is gallery and not Expansion().active and str(Expansion()) == "none"
    empty = np.zeros((0, 4), np.float32)
    assert query_expansion(queries, empty, 3).shape == (3, 4) and database_augmentation(empty, 3).shape == (0, 4)


def test_expansion_lifts_map_on_clusters_with_stragglers():
    # Each class is a curved band: a query at one end is far from photos at the other, but its
    # neighbours lead there. Expansion must raise mAP; the check fails if it does nothing or harm.
    rng = np.random.default_rng(1)
    classes, per = 8, 12
    centres = _unit(rng.normal(size=(classes, 16)))
    drift = _unit(rng.normal(size=(classes, 16)))
    def photos(n):
        t = rng.uniform(-1, 1, size=(classes, n, 1))
        return _unit(centres[:, None] + 0.9 * t * drift[:, None] + 0.35 * rng.normal(size=(classes, n, 16)))
    gallery, queries = photos(per).reshape(-1, 16), photos(4).reshape(-1, 16)
    g_labels, q_labels = np.repeat(np.arange(classes), per), np.repeat(np.arange(classes), 4)
    plain = retrieval_metrics(queries, q_labels, gallery, g_labels).mean_average_precision
    q, g = Expansion.parse("qe=3,dba=3,alpha=1").apply(queries, gallery)
    expanded = retrieval_metrics(q, q_labels, g, g_labels).mean_average_precision
    assert expanded > plain + 0.02, (plain, expanded)


def test_settings_parse_and_bad_values_are_named():
    assert Expansion.parse("dba=3, qe=2 ,alpha=3") == Expansion(qe=2, dba=3, alpha=3.0)
    assert str(Expansion.parse("qe=2,dba=3,alpha=3")) == "qe=2,dba=3,alpha=3"
    assert Expansion.parse("none") == Expansion() and Expansion.parse("qe=1").active
    assert not Expansion.parse("dba=1").active
    for text, message in [("qe=-1", "qe=-1"), ("qe=two", "qe='two'"), ("k=3", "qe=K"), ("qe", "qe=K"),
                          ("alpha=nan", "alpha=nan"), ("alpha=-2", "alpha=-2"), ("qe=1,qe=2", "twice"),
                          ("dba=1.5", "dba='1.5'")]:
        with pytest.raises(ValueError, match=message):
            Expansion.parse(text)
    with pytest.raises(ValueError, match="k must be an integer >= 1. Received: k=0"):
        database_augmentation(np.eye(3), 0)  # would average nothing: zero vectors
    with pytest.raises(ValueError, match="not finite"):
        database_augmentation(np.array([[np.nan, 1.0]]), 2)
    with pytest.raises(ValueError, match="dimensions"):
        query_expansion(np.ones((1, 3)), np.ones((2, 4)), 1)
