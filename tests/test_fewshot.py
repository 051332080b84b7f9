import numpy as np
import pytest
from helpers import clustered_embeddings

from visnet.evaluation.fewshot import (
    MLP,
    FewShotResult,
    NearestPrototype,
    SoftKMeans,
    classifiers,
    evaluate_episodes,
)


@pytest.mark.parametrize("classifier", ["1nn", "knn", "prototype", "soft-kmeans", "mlp", {"name": "mlp", "pca": 4}, "ensemble",
                                        {"name": "ensemble", "voting": "hard", "members": ["1nn", "knn", "prototype"]},
                                        {"name": "ensemble", "members": [{"name": "prototype", "columns": [0, 8]},
                                                                         {"name": "1nn", "columns": [8, 16]}]}])
def test_every_classifier_is_perfect_on_separable_clusters(classifier):
    x, y = clustered_embeddings(classes=8, per_class=12, dim=16)
    result = evaluate_episodes(x, y, ways=5, shots=3, queries=4, episodes=10, seed=0, classifier=classifier)
    assert result.mean == 1.0 and result.accuracies.shape == (10,)
    assert result.to_dict()["episodes"] == 10


def test_random_embeddings_score_near_chance():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 16)), np.repeat(np.arange(10), 30)
    result = evaluate_episodes(x, y, ways=5, shots=1, queries=10, episodes=200, seed=0)
    assert abs(result.mean - 0.2) < 0.03


def test_confidence_interval_is_the_normal_approximation():
    result = FewShotResult(5, 1, 15, "prototype", np.array([0.5, 0.7, 0.9, 0.6]))
    assert result.mean == pytest.approx(0.675)
    assert result.ci95 == pytest.approx(1.96 * np.std([0.5, 0.7, 0.9, 0.6], ddof=1) / 2)


def test_prototypes_are_class_means():
    model = NearestPrototype().fit(np.array([[0.0, 0], [2, 0], [10, 10]]), np.array([0, 0, 1]))
    np.testing.assert_allclose(model.prototypes_, [[1, 0], [10, 10]])
    np.testing.assert_array_equal(model.predict(np.array([[1.2, 0.5], [8, 9]])), [0, 1])


def test_registry_and_errors():
    assert classifiers.names() == ["1nn", "ensemble", "knn", "mlp", "prototype", "soft-kmeans"]
    assert isinstance(classifiers.get({"name": "mlp", "hidden": 8}), MLP)
    x, y = clustered_embeddings(classes=3, per_class=5)
    with pytest.raises(ValueError, match="need 5 classes"):
        evaluate_episodes(x, y, ways=5, shots=1, queries=2, episodes=2)
    with pytest.raises(ValueError, match="Unknown few-shot classifier: 'svm'"):
        evaluate_episodes(x, y, ways=2, shots=1, queries=2, episodes=2, classifier="svm")


def test_scores_are_distributions_over_the_classes_in_order():
    x, y = clustered_embeddings(classes=4, per_class=5, dim=6)
    labels = np.array(list("dcba"))[y]
    for name in ("1nn", "knn", "prototype", "soft-kmeans", "mlp", "ensemble"):
        model = classifiers.get(name).fit(x, labels)
        scores = model.scores(x)
        assert scores.shape == (20, 4) and list(model.classes_) == ["a", "b", "c", "d"]
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-6)
        assert (model.classes_[scores.argmax(axis=1)] == labels).all(), name


class Fixed:
    """A stub member that predicts one label and is sure of it."""

    def __init__(self, label, metric=None, seed=None):
        self.label = label

    def fit(self, x, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, x):
        return np.full(len(x), self.label)

    def scores(self, x):
        return np.tile((self.classes_ == self.label).astype(float), (len(x), 1))


def test_voting_breaks_ties_deterministically(monkeypatch):
    from visnet.evaluation import fewshot

    monkeypatch.setattr(fewshot, "build_classifier", lambda config, metric, seed: Fixed(config["label"]))
    x, y = np.zeros((4, 2)), np.array([0, 1, 2, 2])
    # Hard: 1 vote for "2", 1 for "0": the member listed first wins; a majority beats it.
    hard = fewshot.Ensemble([{"label": 2}, {"label": 0}], voting="hard").fit(x, y)
    assert hard.predict(x[:1]).tolist() == [2]
    hard = fewshot.Ensemble([{"label": 0}, {"label": 2}], voting="hard").fit(x, y)
    assert hard.predict(x[:1]).tolist() == [0]
    assert fewshot.Ensemble([{"label": 0}, {"label": 2}, {"label": 2}], voting="hard").fit(x, y).predict(
        x[:1]).tolist() == [2]
    # Soft: equal summed scores go to the first class in sorted order, whatever the member order.
    soft = fewshot.Ensemble([{"label": 2}, {"label": 1}], voting="soft").fit(x, y)
    assert soft.predict(x[:1]).tolist() == [1]
    np.testing.assert_allclose(soft.scores(x[:1]), [[0, 0.5, 0.5]])


def test_ensemble_errors_name_the_value():
    from visnet.evaluation.fewshot import Ensemble

    with pytest.raises(ValueError, match="voting must be one of"):
        Ensemble(voting="loud")
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble(members=[])
    with pytest.raises(ValueError, match="cannot hold another ensemble"):
        Ensemble(members=["ensemble"])


def test_the_grid_runs_every_cell_and_marks_the_ones_it_cannot_draw():
    from visnet.evaluation.fewshot import NearestPrototype, accuracy_grid, format_cell

    x, y = clustered_embeddings(classes=3, per_class=6, dim=8)
    logged = []
    rows = accuracy_grid(x, y, ways=(2, 3, 4), shots=(1, 5), queries=1, episodes=3, log=logged.append)
    assert [(r["ways"], r["shots"]) for r in rows] == [(2, 1), (2, 5), (3, 1), (3, 5), (4, 1), (4, 5)]
    assert all(r["accuracy"] == 1.0 for r in rows[:4])
    assert rows[4]["accuracy"] is None and rows[4]["classifier"] == "prototype" and "4" in rows[4]["error"]
    assert len(logged) == 2 and format_cell(rows[4]) == "n/a" and format_cell(rows[0]) == "100.0 ± 0.0%"
    objects = accuracy_grid(x, y, (2,), (1,), queries=1, episodes=2, classifier=NearestPrototype())
    assert objects[0]["classifier"] == "NearestPrototype" and objects[0]["accuracy"] == 1.0


def test_mlp_solver_auto_takes_lbfgs_on_embeddings_and_adam_on_wide_features():
    x, y = clustered_embeddings(classes=3, per_class=4, dim=16)
    assert MLP().fit(x, y).model_[-1].solver == "lbfgs"
    wide, labels = clustered_embeddings(classes=3, per_class=4, dim=MLP.LBFGS_MAX_DIM + 1)
    assert MLP().fit(wide, labels).model_[-1].solver == "adam"
    assert MLP(pca=8).fit(wide, labels).model_[-1].solver == "lbfgs"  # PCA first: 8 dimensions
    assert MLP(solver="adam").fit(x, y).model_[-1].solver == "adam"
    with pytest.raises(ValueError, match="solver='sgd'"):
        MLP(solver="sgd")


def _soft_kmeans_reference(support, labels, queries, iterations, temperature):
    """Soft k-means prototypes written out one class and one query at a time."""
    classes = sorted(set(labels.tolist()))
    prototypes = [support[labels == c].mean(axis=0) for c in classes]
    for _ in range(iterations):
        weights = []
        for q in queries:
            logits = [-temperature * float(np.sum((q - p) ** 2)) for p in prototypes]
            e = np.exp(np.array(logits) - max(logits))
            weights.append(e / e.sum())
        prototypes = [(support[labels == c].sum(axis=0) + sum(w[i] * q for w, q in zip(weights, queries)))
                      / (np.sum(labels == c) + sum(w[i] for w in weights)) for i, c in enumerate(classes)]
    return np.array(prototypes)


@pytest.mark.parametrize("iterations,temperature", [(1, 5.0), (3, 0.5), (4, 20.0)])
def test_soft_kmeans_equals_the_reference(iterations, temperature):
    rng = np.random.default_rng(iterations)
    support, labels = rng.normal(size=(9, 5)), np.array([0, 0, 1, 1, 1, 2, 2, 0, 2])
    queries = rng.normal(size=(13, 5))
    model = SoftKMeans(iterations, temperature).fit(support, labels)
    expected = _soft_kmeans_reference(support, labels, queries, iterations, temperature)
    np.testing.assert_allclose(model.refined_prototypes(queries), expected, rtol=1e-10, atol=1e-12)
    distances = ((queries[:, None] - expected[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(model.predict(queries), distances.argmin(axis=1))


def test_soft_kmeans_with_no_iterations_is_nearest_prototype():
    x, y = np.random.default_rng(0).normal(size=(60, 8)), np.repeat(np.arange(6), 10)
    a = evaluate_episodes(x, y, ways=5, shots=1, queries=5, episodes=30, classifier="prototype")
    b = evaluate_episodes(x, y, ways=5, shots=1, queries=5, episodes=30,
                          classifier={"name": "soft-kmeans", "iterations": 0})
    np.testing.assert_array_equal(a.accuracies, b.accuracies)


def test_soft_kmeans_uses_the_queries_where_one_shot_prototypes_mislead():
    """One-shot supports drawn from wide clusters put prototypes off centre; the batch of queries
    pulls them back, so the transductive rule must beat the inductive one on the same episodes."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 16))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.repeat(centres, 40, axis=0) + rng.normal(scale=0.22, size=(320, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.repeat(np.arange(8), 40)
    inductive = evaluate_episodes(x, y, ways=5, shots=1, queries=15, episodes=100, classifier="prototype")
    transductive = evaluate_episodes(x, y, ways=5, shots=1, queries=15, episodes=100, classifier="soft-kmeans")
    assert inductive.mean < 0.97 and transductive.mean > inductive.mean + 0.02, (inductive.mean, transductive.mean)


def test_soft_kmeans_errors_name_the_value():
    with pytest.raises(ValueError, match="iterations must be an integer >= 0. Received: iterations=-1"):
        SoftKMeans(iterations=-1)
    with pytest.raises(ValueError, match="temperature must be > 0. Received: temperature=0"):
        SoftKMeans(temperature=0)
