"""N-way K-shot accuracy over seeded episodes, with classifiers fitted on each episode's support set."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from visnet.data.samplers import EpisodeSampler, NotEnoughClassesError
from visnet.evaluation.classification import vote
from visnet.evaluation.distances import pairwise_distances
from visnet.registry import Registry

classifiers = Registry("few-shot classifier")


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


@classifiers.register("1nn")
class NearestNeighbour:
    """Predicts the label of the nearest support embedding (ties: first in support order).

    `scores(x)`: (n, classes) softmax of minus each class's nearest distance, columns in `classes_` order.
    """

    def __init__(self, metric: str = "euclidean"):
        self.metric = metric

    def fit(self, x: np.ndarray, y: np.ndarray) -> NearestNeighbour:
        self.x_, self.y_ = np.asarray(x), np.asarray(y)
        self.classes_ = np.unique(self.y_)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.y_[np.argmin(pairwise_distances(x, self.x_, self.metric), axis=1)]

    def scores(self, x: np.ndarray) -> np.ndarray:
        distances = pairwise_distances(x, self.x_, self.metric)
        nearest = np.stack([distances[:, self.y_ == c].min(axis=1) for c in self.classes_], axis=1)
        return _softmax(-nearest)


@classifiers.register("knn")
class KNearestNeighbours(NearestNeighbour):
    """Majority vote of the k nearest support embeddings (k is capped at the support size)."""

    def __init__(self, k: int = 3, metric: str = "euclidean"):
        super().__init__(metric)
        if k < 1:
            raise ValueError(f"k must be >= 1. Received: k={k}")
        self.k = k

    def predict(self, x: np.ndarray) -> np.ndarray:
        return vote(self.y_[self._nearest(x)])

    def _nearest(self, x: np.ndarray) -> np.ndarray:
        distances = pairwise_distances(x, self.x_, self.metric)
        return np.argsort(distances, axis=1, kind="stable")[:, : self.k]

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The share of the k nearest neighbours in each class."""
        labels = self.y_[self._nearest(x)]
        return np.stack([(labels == c).mean(axis=1) for c in self.classes_], axis=1)


@classifiers.register("prototype")
class NearestPrototype:
    """Predicts the class whose mean support embedding is nearest (Snell et al., 2017)."""

    def __init__(self, metric: str = "euclidean"):
        self.metric = metric

    def fit(self, x: np.ndarray, y: np.ndarray) -> NearestPrototype:
        x, y = np.asarray(x, np.float64), np.asarray(y)
        self.classes_ = np.unique(y)
        self.prototypes_ = np.stack([x[y == c].mean(axis=0) for c in self.classes_])
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmin(pairwise_distances(x, self.prototypes_, self.metric), axis=1)]

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Softmax of minus the distances to the prototypes (the prototypical network's posterior)."""
        return _softmax(-pairwise_distances(x, self.prototypes_, self.metric))


@classifiers.register("soft-kmeans")
class SoftKMeans(NearestPrototype):
    """Transductive nearest prototype: the photos being classified refine the prototypes
    (soft k-means, Ren et al. 2018, "Meta-Learning for Semi-Supervised Few-Shot Classification").

    `predict(x)` and `scores(x)` classify the rows of `x` together, so a row's answer depends on
    the others: for when new photos arrive as a batch (a week's uploads of new articles, or an
    N-way K-shot episode's queries). Each of `iterations` steps gives every row a weight per class,
    softmax over classes of `-temperature * squared distance` to the prototypes, and moves each
    prototype to the weighted mean of its support embeddings (weight 1 each) and all rows.
    With `iterations=0` it is `prototype`. Assumes unit-length embeddings (as visnet's are):
    `temperature` is on the scale of their squared distances, 0 to 4. The defaults are the setting
    the fashion benchmark's validation classes chose for its best model, not its novel classes
    (`benchmarks/transductive.py`; README, "Transductive few-shot").

    Args:
        iterations: int >= 0. Refinement steps.
        temperature: float > 0. Sharpness of the assignments (higher: closer to hard k-means).
        metric: str. `euclidean` or `sqeuclidean` (both use squared distances) or `cosine`.
    """

    def __init__(self, iterations: int = 10, temperature: float = 5.0, metric: str = "euclidean"):
        super().__init__(metric)
        if int(iterations) != iterations or iterations < 0:
            raise ValueError(f"iterations must be an integer >= 0. Received: iterations={iterations!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0. Received: temperature={temperature!r}")
        self.iterations, self.temperature = int(iterations), float(temperature)

    def fit(self, x: np.ndarray, y: np.ndarray) -> SoftKMeans:
        super().fit(x, y)
        x, y = np.asarray(x, np.float64), np.asarray(y)
        self.sums_ = np.stack([x[y == c].sum(axis=0) for c in self.classes_])
        self.counts_ = np.array([np.sum(y == c) for c in self.classes_], np.float64)
        return self

    def _distances(self, x: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
        metric = "cosine" if self.metric == "cosine" else "sqeuclidean"
        return pairwise_distances(x, prototypes, metric)

    def refined_prototypes(self, x: np.ndarray) -> np.ndarray:
        """(classes, d): the prototypes after `iterations` soft k-means steps over the rows of `x`."""
        x = np.asarray(x, np.float64)
        prototypes = self.prototypes_
        for _ in range(self.iterations):
            weights = _softmax(-self.temperature * self._distances(x, prototypes))  # (rows, classes)
            prototypes = (self.sums_ + weights.T @ x) / (self.counts_ + weights.sum(axis=0))[:, None]
        return prototypes

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmin(self._distances(x, self.refined_prototypes(x)), axis=1)]

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The rows' class weights against the refined prototypes (softmax of -temperature x distance)."""
        return _softmax(-self.temperature * self._distances(x, self.refined_prototypes(x)))


@classifiers.register("mlp")
class MLP:
    """A one-hidden-layer perceptron trained on the support set, optionally after PCA.

    Args:
        hidden: int. Hidden units.
        pca: int or None. Project onto this many principal components first (capped at the
            number of support images).
        max_iter: int. Training iterations of scikit-learn's `MLPClassifier`.
        seed: int.
        solver: str. `lbfgs`, `adam`, or `auto` (default): L-BFGS on inputs of up to 512
            dimensions (on a few dozen support photos of a 64-d embedding it converges in about
            ten iterations, 10x faster than Adam), Adam above that (on 3,780-d HOG vectors
            L-BFGS is 2-5x slower than Adam's 15-30 iterations).
    """

    SOLVERS = ("auto", "lbfgs", "adam")
    #: `auto` takes L-BFGS up to this many input dimensions (after PCA).
    LBFGS_MAX_DIM = 512

    def __init__(self, hidden: int = 64, pca: int | None = None, max_iter: int = 300, seed: int = 0,
                 solver: str = "auto"):
        if solver not in self.SOLVERS:
            raise ValueError(f"solver must be one of {self.SOLVERS}. Received: solver={solver!r}")
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1. Received: hidden={hidden}")
        if pca is not None and pca < 1:
            raise ValueError(f"pca must be >= 1 or None. Received: pca={pca}")
        self.hidden, self.pca, self.max_iter, self.seed, self.solver = hidden, pca, max_iter, seed, solver

    def fit(self, x: np.ndarray, y: np.ndarray) -> MLP:
        import warnings

        from sklearn.decomposition import PCA
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        steps = [StandardScaler()]
        if self.pca:
            steps.append(PCA(n_components=min(self.pca, len(x), np.shape(x)[1]), random_state=self.seed))
        dim = min(self.pca, len(x), np.shape(x)[1]) if self.pca else np.shape(x)[1]
        solver = self.solver if self.solver != "auto" else ("lbfgs" if dim <= self.LBFGS_MAX_DIM else "adam")
        steps.append(MLPClassifier(hidden_layer_sizes=(self.hidden,), max_iter=self.max_iter,
                                   random_state=self.seed, solver=solver))
        self.model_ = make_pipeline(*steps)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model_.fit(np.asarray(x), np.asarray(y))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model_.predict(np.asarray(x))

    @property
    def classes_(self) -> np.ndarray:
        return self.model_.classes_

    def scores(self, x: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(np.asarray(x))


VOTINGS = ("soft", "hard")


@classifiers.register("ensemble")
class Ensemble:
    """Soft or hard voting over several classifiers fitted on the same support set (Navee report,
    sec. 4.4.2 and 7.3), each optionally on its own columns of the embedding (one block per run
    when the embeddings of several runs are concatenated).

    Args:
        members: sequence of classifier names or config dicts (`{"name": "knn", "k": 3}`); a dict
            may hold `columns: [start, stop]`, the embedding columns that member sees.
        voting: str. `soft`: the class with the highest summed `scores`; `hard`: the class most
            members predict.
        metric: str. Distance of the distance-based members.
        seed: int. Seeds the MLP members.

    Ties are settled deterministically: hard voting gives a tied class to the member listed
    first among those that voted for a tied class; soft voting to the first class in sorted
    order.
    """

    def __init__(self, members=("prototype", "1nn", "mlp"), voting: str = "soft", metric: str = "euclidean",
                 seed: int = 0):
        if voting not in VOTINGS:
            raise ValueError(f"voting must be one of {VOTINGS}. Received: voting={voting!r}")
        members = list(members)
        if not members:
            raise ValueError("An ensemble needs at least one member.")
        if any((m if isinstance(m, str) else m.get("name")) == "ensemble" for m in members):
            raise ValueError("An ensemble cannot hold another ensemble.")
        self.members, self.voting, self.metric, self.seed = members, voting, metric, seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> Ensemble:
        x, y = np.asarray(x), np.asarray(y)
        self.classes_ = np.unique(y)
        self.fitted_ = []
        for i, member in enumerate(self.members):
            config = {"name": member} if isinstance(member, str) else dict(member)
            columns = config.pop("columns", None)
            part = slice(*columns) if columns else slice(None)
            model = build_classifier(config, self.metric, self.seed + i)
            self.fitted_.append((part, model.fit(x[:, part], y)))
        return self

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(n, classes): the mean of the members' scores (soft) or their vote shares (hard)."""
        x = np.asarray(x)
        total = np.zeros((len(x), len(self.classes_)))
        for part, model in self.fitted_:
            if self.voting == "soft":
                scores = model.scores(x[:, part])
                index = np.searchsorted(self.classes_, model.classes_)
                total[:, index] += scores
            else:
                total[np.arange(len(x)), np.searchsorted(self.classes_, model.predict(x[:, part]))] += 1
        return total / len(self.fitted_)

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.voting == "soft":
            return self.classes_[np.argmax(self.scores(x), axis=1)]
        x = np.asarray(x)
        votes = np.stack([model.predict(x[:, part]) for part, model in self.fitted_], axis=1)  # (n, members)
        return vote(votes)


@dataclasses.dataclass(frozen=True)
class FewShotResult:
    ways: int
    shots: int
    queries: int
    classifier: str
    accuracies: np.ndarray  # one per episode

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def ci95(self) -> float:
        """Half-width of the 95% confidence interval of the mean (normal approximation)."""
        n = len(self.accuracies)
        return float(1.96 * np.std(self.accuracies, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")

    def to_dict(self) -> dict:
        return {
            "ways": self.ways,
            "shots": self.shots,
            "queries_per_class": self.queries,
            "classifier": self.classifier,
            "episodes": len(self.accuracies),
            "accuracy": self.mean,
            "ci95": self.ci95,
        }


def evaluate_episodes(
    embeddings: np.ndarray,
    labels: Sequence,
    ways: int,
    shots: int,
    queries: int = 15,
    episodes: int = 600,
    seed: int = 0,
    classifier: str | dict | object = "prototype",
    metric: str = "euclidean",
    progress: bool = False,
) -> FewShotResult:
    """Accuracy of `classifier` on N-way K-shot episodes drawn from `embeddings`.

    Args:
        embeddings: array (n, d). One row per image of the pool.
        labels: one label per row.
        ways, shots, queries: N, K and query images per class.
        episodes: int. Number of episodes; episode e is drawn from (seed, e), so every
            classifier sees the same episodes.
        classifier: a name in `classifiers` (`1nn`, `knn`, `prototype`, `mlp`, `ensemble`), a config dict,
            or an object with `fit(x, y)` and `predict(x)`.
        metric: str. Distance of the distance-based classifiers.
        progress: bool. Show a progress bar over the episodes.
    """
    embeddings = np.asarray(embeddings)
    labels = np.asarray(labels)
    sampler = EpisodeSampler(labels, ways, shots, queries, episodes, seed)
    name = classifier_name(classifier)
    accuracies = np.empty(episodes)
    episodes_iter = iter(sampler)
    if progress:
        from tqdm import tqdm

        episodes_iter = tqdm(episodes_iter, total=episodes, unit="episode", leave=False,
                             desc=f"{name} {ways}-way {shots}-shot")
    for e, episode in enumerate(episodes_iter):
        model = build_classifier(classifier, metric, seed + e)
        model.fit(embeddings[episode.support], episode.support_labels)
        predictions = model.predict(embeddings[episode.query])
        accuracies[e] = np.mean(predictions == episode.query_labels)
    return FewShotResult(ways, shots, queries, name, accuracies)


def classifier_name(classifier) -> str:
    """The name of a classifier given as a name, a config dict or an object."""
    if isinstance(classifier, str):
        return classifier
    if isinstance(classifier, dict):
        return str(classifier.get("name"))
    return type(classifier).__name__


def build_classifier(classifier, metric: str = "euclidean", seed: int = 0):
    """A fresh classifier from a name, a config dict or an object (returned as it is): MLPs and
    ensembles get `seed`, the distance-based ones `metric`, unless the config sets them."""
    if isinstance(classifier, str):
        classifier = {"name": classifier}
    if isinstance(classifier, dict):
        cls = classifiers.lookup(classifier.get("name"))
        defaults = {"seed": seed} if cls is MLP else {"metric": metric, "seed": seed} if cls is Ensemble \
            else {"metric": metric}
        return classifiers.get({**defaults, **classifier})
    return classifier


GRID_FIELDS = ["ways", "shots", "classifier", "accuracy", "ci95", "episodes", "queries_per_class", "error"]


def accuracy_grid(embeddings: np.ndarray, labels: Sequence, ways: Sequence[int], shots: Sequence[int],
                  queries: int = 15, episodes: int = 600, seed: int = 0, classifier="prototype",
                  metric: str = "euclidean", progress: bool = False, log=None) -> list[dict]:
    """`evaluate_episodes` for every ways x shots cell, as `FewShotResult.to_dict()` rows.

    A cell the pool cannot fill (too few classes, or a class with fewer than shots + queries
    images) gets `accuracy=None` and its reason under `error`, and the others still run.
    """
    name = classifier_name(classifier)
    rows = []
    for n in ways:
        for k in shots:
            try:
                rows.append(evaluate_episodes(embeddings, labels, n, k, queries, episodes, seed, classifier,
                                              metric, progress=progress).to_dict())
            except NotEnoughClassesError as error:
                rows.append({"ways": n, "shots": k, "queries_per_class": queries, "classifier": name,
                             "episodes": 0, "accuracy": None, "ci95": None, "error": str(error)})
                if log:
                    log(f"n/a {n}-way {k}-shot: {error}")
    return rows


def write_grid_csv(rows: Sequence[dict], path: str, fields: Sequence[str] = GRID_FIELDS) -> str:
    """The grid's rows as CSV, one column per name in `fields` (missing values left empty)."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, list(fields))
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key) for key in fields})
    return path


def save_grid(out: str, rows: Sequence[dict], report: dict, title: str, fields: Sequence[str] = GRID_FIELDS,
              **heatmap) -> None:
    """A grid command's files: OUT.csv (`fields` of each row), OUT.png (the heatmap; `heatmap`
    goes to `accuracy_heatmap`) and OUT.json (`report` with the rows and the pool's size)."""
    import json
    import os

    from visnet.evaluation.plots import accuracy_heatmap

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    write_grid_csv(rows, out + ".csv", fields)
    accuracy_heatmap(rows, out + ".png", title, **heatmap)
    with open(out + ".json", "w", encoding="utf-8") as handle:
        json.dump({**report, "rows": list(rows)}, handle, indent=2, default=str)


def pool_size(labels) -> dict:
    """{"images", "classes"} of an episode pool's labels."""
    labels = np.asarray(labels)
    return {"images": int(len(labels)), "classes": int(len(np.unique(labels)))}


def format_cell(row: dict) -> str:
    """`81.8 ± 0.8%`, or `n/a` for a cell that could not be drawn."""
    return "n/a" if row.get("accuracy") is None else f"{100 * row['accuracy']:.1f} ± {100 * row['ci95']:.1f}%"
