"""A trained weak-label run's three uses beyond retrieval: tag images, find nearest words, search images by text.

    words = WordModel.from_run(Run("runs/weakly"))
    vectors = words.embed(images)                  # normalised image batch -> embeddings
    words.tag(vectors, k=5)                        # [[("dress", 0.41), ("striped", 0.12), ...], ...]
    words.neighbours("navy", k=5)                  # [("blue", 0.81), ...]
    words.text_scores("red striped dress", vectors)   # one score per image: rank them
"""

from __future__ import annotations

import numpy as np


class WordModel:
    """Image embedder + word head + vocabulary of a `weakly` run.

    Args:
        embedding_model: keras.Model, images -> embeddings.
        head: the run's `visnet.layers.WordScores` layer.
        vocabulary: `visnet.data.text.Vocabulary` the head was trained with.
        image_spec: `ImageSpec` images must be prepared with.
        scale: float. The inverse temperature the run trained with (its loss's `scale`).
        word_power: float. The run's `word_power`: training drew words in proportion to their
            count to this power (0: uniformly).

    With uniform word sampling (`word_power` 0) the head learns p(word | image) as if every word
    were equally common. `tag` puts the catalogue's word frequencies back (Bayes:
    log p(word | image) = scale * cos + (1 - word_power) * log count + const), which ranks
    "dress" above a rare colour the picture only hints at; `scores` and text search use the
    cosines alone.
    """

    def __init__(self, embedding_model, head, vocabulary, image_spec, scale: float = 16.0, word_power: float = 0.0):
        if head.vocabulary_size != len(vocabulary):
            raise ValueError(f"The word head scores {head.vocabulary_size} words but the vocabulary has "
                             f"{len(vocabulary)}.")
        self.embedding_model, self.head, self.vocabulary, self.image_spec = embedding_model, head, vocabulary, image_spec
        self.scale, self.word_power = scale, word_power

    @classmethod
    def from_run(cls, run, which: str = "best") -> WordModel:
        """Loads checkpoint `which` of a run trained with `--arch weakly`."""
        import keras

        import visnet.layers  # noqa: F401  (registers the custom layers)
        import visnet.losses  # noqa: F401
        from visnet.models.common import embedding_model

        if run.config.arch != "weakly":
            raise ValueError(f"{run.path} is a {run.config.arch} run: tagging needs a run of --arch weakly.")
        model = keras.models.load_model(run.checkpoint(which), compile=False)
        return cls(embedding_model(model), model.get_layer("word_scores"), run.vocabulary(), run.image_spec,
                   float(run.info["loss"].get("scale", 16.0)), float(run.config.word_power))

    def embed(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Embeddings of a batch of images prepared with `image_spec` (normalised)."""
        return np.asarray(self.embedding_model.predict(images, batch_size=batch_size, verbose=0))

    def scores(self, embeddings: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(n, K) score of every vocabulary word for each embedding."""
        parts = [np.asarray(self.head.scores(embeddings[i : i + batch_size]))
                 for i in range(0, len(embeddings), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.vocabulary)), np.float32)

    def tag_scores(self, embeddings: np.ndarray, prior: bool = True) -> np.ndarray:
        """(n, K) log-odds of each word for each image: `scale * cos` (+ (1 - word_power) * log word count
        with `prior`)."""
        scores = self.scale * self.scores(embeddings)
        weight = 1.0 - self.word_power
        return scores + weight * np.log(self.vocabulary.counts)[None, :] if prior and weight else scores

    def tag(self, embeddings: np.ndarray, k: int = 5, prior: bool = True) -> list[list[tuple[str, float]]]:
        """The k most likely words of each image with their probabilities (softmax over the vocabulary), best first."""
        if k < 1:
            raise ValueError(f"k must be >= 1. Received: k={k}")
        scores = self.tag_scores(embeddings, prior)
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return [[(self.vocabulary.words[j], float(row[j])) for j in ids] for row, ids in zip(scores, top)]

    @property
    def word_vectors(self) -> np.ndarray:
        return np.asarray(self.head.words)

    def neighbours(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The k words nearest `word` (cosine of word vectors), nearest first; the word itself left out."""
        ids = self.vocabulary.ids(self.vocabulary.tokenizer(word))
        if len(ids) != 1:
            raise ValueError(f"{word!r} is not a word of the vocabulary ({len(self.vocabulary)} words).")
        w = self.word_vectors
        w = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
        similarity = w @ w[ids[0]]
        similarity[ids[0]] = -np.inf
        top = np.argsort(-similarity, kind="stable")[:k]
        return [(self.vocabulary.words[j], float(similarity[j])) for j in top]

    def query_ids(self, text: str) -> np.ndarray:
        """The vocabulary ids of a text query's words; a query with none is an error naming it."""
        return self.vocabulary.query_ids(text)

    def text_scores(self, text: str, embeddings: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Text -> image search: each image's summed score of the query's words (higher ranks first)."""
        ids = self.query_ids(text)
        parts = []
        for start in range(0, len(embeddings), batch_size):
            chunk = embeddings[start : start + batch_size]
            tiled = np.tile(ids[None, :], (len(chunk), 1))
            parts.append(np.asarray(self.head.score_ids(chunk, tiled)).sum(axis=1))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)
