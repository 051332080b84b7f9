from collections import Counter

import numpy as np
import pytest

from visnet.evaluation.classification import confusions, knn_accuracy, knn_predict, vote


def brute_knn(train, train_labels, test, k):
    predictions = []
    for x in test:
        distances = np.linalg.norm(train - x, axis=1)
        order = sorted(range(len(train)), key=lambda i: (distances[i], i))[:k]
        counts = Counter(train_labels[i] for i in order)
        best = max(counts.values())
        predictions.append(next(train_labels[i] for i in order if counts[train_labels[i]] == best))
    return np.array(predictions)


def test_knn_matches_brute_force_and_chunking_does_not_matter():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(200, 5)), rng.normal(size=(60, 5))
    train_labels, test_labels = rng.integers(0, 4, 200), rng.integers(0, 4, 60)
    predictions = knn_predict(train, train_labels, test, ks=(1, 3, 5))
    small = knn_predict(train, train_labels, test, ks=(1, 3, 5), max_memory=24 * 200 * 7)
    for k in (1, 3, 5):
        np.testing.assert_array_equal(predictions[k], brute_knn(train, train_labels, test, k))
        np.testing.assert_array_equal(small[k], predictions[k])
    accuracy = knn_accuracy(train, train_labels, test, test_labels, ks=(1, 5))
    assert accuracy[1] == pytest.approx(np.mean(predictions[1] == test_labels))


def test_vote_breaks_ties_by_the_nearest():
    np.testing.assert_array_equal(vote([["a", "b", "b"], ["a", "b", "c"], ["c", "a", "a"]]), ["b", "a", "a"])
    np.testing.assert_array_equal(vote([["b", "a", "a", "b"], ["a", "b", "b", "a"]]), ["b", "a"])


def test_hand_made_knn():
    train = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    labels = np.array(["x", "y", "y", "z", "z"])
    assert knn_accuracy(train, labels, [[0.1], [10.4]], ["x", "z"], ks=(1, 3)) == {1: 1.0, 3: 0.5}
    with pytest.raises(ValueError, match=r"Every k must be in \[1, 5\]"):
        knn_predict(train, labels, [[0.0]], ks=(6,))


def test_confusions_count_each_mistaken_pair_most_frequent_first():
    rng = np.random.default_rng(1)
    labels, predicted = rng.choice(list("abcd"), 300), rng.choice(list("abcd"), 300)
    expected = Counter((a, b) for a, b in zip(labels, predicted) if a != b)
    got = confusions(labels, predicted, top=100)
    assert {(c["label"], c["predicted"]): c["count"] for c in got} == expected
    assert [c["count"] for c in got] == sorted(expected.values(), reverse=True)
    assert confusions(labels, predicted, top=3) == got[:3]
    assert confusions(["a", "b"], ["a", "b"]) == []
    top = confusions(["a", "a", "b", "c"], ["b", "b", "a", "a"])  # ties by the labels' names
    assert top == [{"label": "a", "predicted": "b", "count": 2}, {"label": "b", "predicted": "a", "count": 1},
                   {"label": "c", "predicted": "a", "count": 1}]
    with pytest.raises(ValueError, match="3 labels but 2 predictions"):
        confusions(["a", "b", "c"], ["a", "b"])


def test_gallery_smoothing_matches_a_loop_over_each_row():
    from visnet.evaluation.classification import smooth_gallery

    rng = np.random.default_rng(3)
    train = rng.normal(size=(40, 5)) * rng.uniform(0.5, 2.0, size=(40, 1))
    labels = rng.integers(0, 4, 40)
    labels[0] = 9  # a class of one row keeps it
    for k in (1, 3, 50):
        expected = np.empty_like(train)
        for i in range(len(train)):
            same = [j for j in np.flatnonzero(labels == labels[i]) if j != i]
            same.sort(key=lambda j: (np.sum((train[j] - train[i]) ** 2), j))
            mean = train[[i, *same[:k]]].mean(axis=0)
            expected[i] = mean * np.linalg.norm(train[i]) / np.linalg.norm(mean)
        np.testing.assert_allclose(smooth_gallery(train, labels, k), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(smooth_gallery(train, labels, 0), train, rtol=1e-6)
    np.testing.assert_allclose(smooth_gallery(train, labels, 2)[0], train[0], rtol=1e-6)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="k must be an integer >= 0"):
            smooth_gallery(train, labels, bad)
    with pytest.raises(ValueError, match="40 training rows but 3 labels"):
        smooth_gallery(train, labels[:3], 1)


def test_choose_smoothing_picks_the_k_its_held_out_rows_classify_best_ties_to_the_smaller():
    from visnet.evaluation.classification import choose_smoothing, smooth_gallery

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 60)
    train = rng.normal(size=(60, 4)) + labels[:, None] * 0.8
    held_out = np.zeros(60, bool)
    held_out[::4] = True
    grid = (0, 1, 3, 8)
    expected = []
    for k in grid:  # brute force: each held-out row's nearest smoothed gallery row
        gallery = smooth_gallery(train[~held_out], labels[~held_out], k)
        nearest = [np.argmin(np.linalg.norm(gallery - x, axis=1)) for x in train[held_out]]
        expected.append(np.mean(labels[~held_out][nearest] == labels[held_out]))
    chosen, rows = choose_smoothing(train, labels, held_out, grid)
    assert [row["k"] for row in rows] == list(grid)
    np.testing.assert_allclose([row["validation_1nn"] for row in rows], expected)
    assert chosen == grid[int(np.argmax(expected))]  # argmax: the first best, i.e. the smaller K on a tie
    separated = np.repeat(np.eye(3), 4, axis=0) * 10 + rng.normal(scale=0.01, size=(12, 3))
    tied, rows = choose_smoothing(separated, np.repeat([0, 1, 2], 4), np.arange(12) % 4 == 0, (4, 2, 0))
    assert tied == 0 and {row["validation_1nn"] for row in rows} == {1.0}
    for mask in (np.zeros(60, bool), np.ones(60, bool)):
        with pytest.raises(ValueError, match="rows are held out"):
            choose_smoothing(train, labels, mask)
    with pytest.raises(ValueError, match="held-out mask of shape"):
        choose_smoothing(train, labels, held_out[:10])
