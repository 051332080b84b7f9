import doctest
import tracemalloc

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from visnet.evaluation import retrieval
from visnet.evaluation.distances import pairwise_distances
from visnet.evaluation.retrieval import retrieval_metrics


def reference(query, query_labels, gallery, gallery_labels, ks):
    """Brute force: sklearn's AP per query and explicit loops for Recall@K."""
    aps, hits = [], {k: [] for k in ks}
    for q, label in zip(query, query_labels):
        distances = np.sqrt(((gallery - q) ** 2).sum(axis=1))
        relevant = gallery_labels == label
        if not relevant.any():
            continue
        aps.append(average_precision_score(relevant, -distances))
        order = sorted(range(len(gallery)), key=lambda i: (distances[i], i))
        for k in ks:
            hits[k].append(any(relevant[i] for i in order[:k]))
    return np.mean(aps), {k: np.mean(v) for k, v in hits.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_and_loops_on_random_data(seed):
    rng = np.random.default_rng(seed)
    query, gallery = rng.normal(size=(40, 6)), rng.normal(size=(70, 6))
    query_labels, gallery_labels = rng.integers(0, 5, 40), rng.integers(0, 5, 70)
    result = retrieval_metrics(query, query_labels, gallery, gallery_labels, ks=(1, 5, 10))
    expected_map, expected_recall = reference(query, query_labels, gallery, gallery_labels, (1, 5, 10))
    assert result.mean_average_precision == pytest.approx(expected_map, abs=1e-12)
    assert result.recall == pytest.approx(expected_recall)


def test_ties_are_one_threshold_as_in_sklearn():
    rng = np.random.default_rng(3)
    # Integer coordinates: many gallery items at exactly the same distance.
    query, gallery = rng.integers(0, 3, (30, 2)).astype(float), rng.integers(0, 3, (50, 2)).astype(float)
    query_labels, gallery_labels = rng.integers(0, 3, 30), rng.integers(0, 3, 50)
    result = retrieval_metrics(query, query_labels, gallery, gallery_labels, ks=(1, 3))
    expected_map, expected_recall = reference(query, query_labels, gallery, gallery_labels, (1, 3))
    assert result.mean_average_precision == pytest.approx(expected_map, abs=1e-12)
    assert result.recall == pytest.approx(expected_recall)


def test_hand_made_cases():
    # Ranking of the gallery for the query at 0: b(1) a(2) a(3) b(4) a(5).
    gallery = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    labels = np.array(["b", "a", "a", "b", "a"])
    result = retrieval_metrics([[0.0]], ["a"], gallery, labels, ks=(1, 2, 5))
    # Positives at ranks 2, 3, 5: AP = (1/2 + 2/3 + 3/5) / 3.
    assert result.mean_average_precision == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 3)
    assert result.recall == {1: 0.0, 2: 1.0, 5: 1.0}
    # Two items tied at distance 1, one relevant: one threshold with precision 1/2.
    tied = retrieval_metrics([[0.0]], ["a"], [[1.0], [-1.0]], ["b", "a"], ks=(1,))
    assert tied.mean_average_precision == pytest.approx(0.5)
    assert tied.recall == {1: 0.0}  # the tie is broken by gallery order: "b" first
    perfect = retrieval_metrics([[0.0], [10.0]], ["a", "b"], [[0.1], [9.9], [5.0]], ["a", "b", "a"], ks=(1,))
    assert perfect.mean_average_precision == pytest.approx((1 + 1) / 2)


def test_queries_without_positive_are_counted_not_averaged():
    result = retrieval_metrics([[0.0], [1.0]], ["a", "z"], [[0.5], [2.0]], ["a", "b"], ks=(1,))
    assert result.queries == 2 and result.queries_without_positive == 1
    assert result.mean_average_precision == 1.0 and np.isnan(result.average_precisions[1])
    with pytest.raises(ValueError, match="No query has a same-label item"):
        retrieval_metrics([[0.0]], ["z"], [[0.5]], ["a"])


def test_exclude_self_is_leave_one_out():
    rng = np.random.default_rng(4)
    x, labels = rng.normal(size=(30, 3)), rng.integers(0, 3, 30)
    result = retrieval_metrics(x, labels, x, labels, ks=(1, 5), exclude_self=True)
    aps, hits = [], []
    for i in range(30):
        others = np.delete(np.arange(30), i)
        expected_map, expected_recall = reference(x[i : i + 1], labels[i : i + 1], x[others], labels[others], (1,))
        aps.append(expected_map)
        hits.append(expected_recall[1])
    assert result.mean_average_precision == pytest.approx(np.mean(aps), abs=1e-12)
    assert result.recall[1] == pytest.approx(np.mean(hits))
    with pytest.raises(ValueError, match="same length"):
        retrieval_metrics(x, labels, x[:5], labels[:5], exclude_self=True)


def test_chunked_equals_unchunked_and_memory_is_bounded():
    rng = np.random.default_rng(5)
    query, gallery = rng.normal(size=(300, 8)), rng.normal(size=(20_000, 8))
    query_labels, gallery_labels = rng.integers(0, 50, 300), rng.integers(0, 50, 20_000)
    budget = 8 * 2**20
    tracemalloc.start()
    chunked = retrieval_metrics(query, query_labels, gallery, gallery_labels, max_memory=budget)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    whole = retrieval_metrics(query, query_labels, gallery, gallery_labels, max_memory=2**40)
    np.testing.assert_array_equal(chunked.average_precisions, whole.average_precisions)
    assert chunked.recall == whole.recall
    # Unchunked this needs ~430 MB; chunked it stays near its budget (inputs included).
    assert peak < 1.5 * budget + query.nbytes + gallery.nbytes, peak


def test_recall_ks_beyond_the_gallery_are_dropped_and_bad_input_is_named():
    result = retrieval_metrics([[0.0]], ["a"], [[1.0], [2.0]], ["a", "b"], ks=(1, 2, 5))
    assert list(result.recall) == [1, 2]
    with pytest.raises(ValueError, match="query_labels must have one label per row"):
        retrieval_metrics([[0.0], [1.0]], ["a"], [[1.0]], ["a"])
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics([[np.nan]], ["a"], [[1.0]], ["a"])
    with pytest.raises(ValueError, match="metric='manhattan'"):
        retrieval_metrics([[0.0]], ["a"], [[1.0]], ["a"], metric="manhattan")


def test_distances_match_brute_force():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(7, 4))
    brute = np.array([[np.linalg.norm(x - y) for y in b] for x in a])
    np.testing.assert_allclose(pairwise_distances(a, b), brute, atol=1e-12)
    np.testing.assert_allclose(pairwise_distances(a, b, "sqeuclidean"), brute**2, atol=1e-12)
    cosine = np.array([[1 - x @ y / np.linalg.norm(x) / np.linalg.norm(y) for y in b] for x in a])
    np.testing.assert_allclose(pairwise_distances(a, b, "cosine"), cosine, atol=1e-12)
    np.testing.assert_allclose(pairwise_distances(a, a).diagonal(), 0, atol=1e-7)


def test_docstring_examples():
    assert doctest.testmod(retrieval).failed == 0
