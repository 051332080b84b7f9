import numpy as np
import pytest
from helpers import clustered_embeddings

from visnet.evaluation.fewshot import (
    MLP,
    FewShotResult,
    NearestPrototype,
    classifiers,
    evaluate_episodes,
)


@pytest.mark.parametrize("classifier", ["1nn", "knn", "prototype", "mlp", {"name": "mlp", "pca": 4}])
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
    assert classifiers.names() == ["1nn", "knn", "mlp", "prototype"]
    assert isinstance(classifiers.get({"name": "mlp", "hidden": 8}), MLP)
    x, y = clustered_embeddings(classes=3, per_class=5)
    with pytest.raises(ValueError, match="need 5 classes"):
        evaluate_episodes(x, y, ways=5, shots=1, queries=2, episodes=2)
    with pytest.raises(ValueError, match="Unknown few-shot classifier: 'svm'"):
        evaluate_episodes(x, y, ways=2, shots=1, queries=2, episodes=2, classifier="svm")
