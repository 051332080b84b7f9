"""Word scores of an image embedding, for the weak-label image-text model: cos(w, z), sampled or full.

The word embedding matrix W holds one vector per vocabulary word; the score of word k for an
image with embedding z is w_kᵀz (Joulin et al., "Learning Visual Features from Large Weakly
Supervised Data", 2015; Corbière, internship report, eq. 2.1), here as a cosine: the image
embedding is L2-normalised for retrieval, and `SampledSoftmaxLoss` multiplies the cosines by
an inverse temperature, as the normalised softmax of the metric-learning models does (raw dot
products with unit image vectors start near 0 and barely train in a few hundred steps).
Training scores the positive word and a few sampled negatives only (negative sampling);
tagging and text search score every word.

With `types > 1` (the report's pseudo-attention, sec. 4.3) the image embedding is read as
`types` sub-vectors (clothing type, colour, texture, style) and a word-type head gives each
word a distribution p over types: score(k) = ŵ_kᵀ (sum_t p_k,t ẑ_t) (unit vectors). Each word is scored with
its own type distribution, in training and at inference alike (the report used the positive
word's p for every candidate in training and tried five fixed p at inference).
"""

from __future__ import annotations

import keras
from keras import ops

# Score given to a sampled negative that is the positive word itself ("accidental hit").
_MASKED = -1e9


def _unit(x):
    return x / ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True) + 1e-12)


@keras.saving.register_keras_serializable(package="visnet")
class WordScores(keras.layers.Layer):
    """Scores of vocabulary words for image embeddings.

    Args:
        vocabulary_size: int. Words in the vocabulary (K).
        negatives: int. Sampled negatives per positive in training (N_neg).
        close_negatives: int. How many of the negatives are "close": drawn from the
            `close_pool` words nearest the positive under the current word embedding (cosine).
        close_pool: int. The nearest words close negatives are drawn from.
        types: int. Sub-vectors of the image embedding (1: plain scores; 4: pseudo-attention).
        type_weight: float. Weight of the cross-entropy of the word-type head on lexicon words.
        entropy_weight: float. Weight of the type head's entropy on words outside the lexicon
            (pushes their type distribution towards one type).
        seed: int. Seeds the negative sampling.

    Call: `layer([embedding, positive])`, embedding (batch, types * d), positive (batch,) word
    ids -> cosines (batch, 1 + negatives); column 0 is the positive, so the loss is a softmax
    cross-entropy with target 0 (`SampledSoftmaxLoss`). A negative that equals the positive is
    masked out (a very negative score). `layer.scores(embedding)` gives all K scores.
    """

    def __init__(self, vocabulary_size: int, negatives: int = 100, close_negatives: int = 0, close_pool: int = 10,
                 types: int = 1, type_weight: float = 0.1, entropy_weight: float = 0.01, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if vocabulary_size < 2:
            raise ValueError(f"vocabulary_size must be >= 2. Received: vocabulary_size={vocabulary_size}")
        if negatives < 1:
            raise ValueError(f"negatives must be >= 1. Received: negatives={negatives}")
        if not 0 <= close_negatives <= min(negatives, close_pool):
            raise ValueError(f"close_negatives must be in [0, min(negatives, close_pool)]. "
                             f"Received: close_negatives={close_negatives}")
        if close_negatives and close_pool >= vocabulary_size:
            raise ValueError(f"close_pool must be < vocabulary_size. Received: close_pool={close_pool}")
        if types < 1:
            raise ValueError(f"types must be >= 1. Received: types={types}")
        self.vocabulary_size, self.negatives = vocabulary_size, negatives
        self.close_negatives, self.close_pool = close_negatives, close_pool
        self.types, self.type_weight, self.entropy_weight, self.seed = types, type_weight, entropy_weight, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        embedding_shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and \
            isinstance(input_shape[0], (list, tuple)) else input_shape
        width = embedding_shape[-1]
        if width % self.types:
            raise ValueError(f"The embedding width {width} does not split into types={self.types} sub-vectors.")
        self.dim = width // self.types
        self.words = self.add_weight(name="words", shape=(self.vocabulary_size, self.dim),
                                     initializer=keras.initializers.RandomNormal(stddev=0.1))
        if self.types > 1:
            self.type_kernel = self.add_weight(name="type_kernel", shape=(self.dim, self.types),
                                               initializer="glorot_uniform")
            self.type_bias = self.add_weight(name="type_bias", shape=(self.types,), initializer="zeros")
            # Type of each word from the lexicon, -1 for words it does not list (set by `set_word_types`).
            self.word_types = self.add_weight(name="word_types", shape=(self.vocabulary_size,), dtype="int32",
                                              initializer=keras.initializers.Constant(-1), trainable=False)
        self.built = True

    def set_word_types(self, word_types) -> None:
        """Lexicon type (0 .. types - 1) of every word, -1 for unknown."""
        if self.types == 1:
            raise ValueError("set_word_types needs types > 1 (the pseudo-attention head).")
        self.word_types.assign(ops.convert_to_tensor(word_types, "int32"))

    # Scoring ----------------------------------------------------------------------------------
    def type_distribution(self, word_vectors):
        """Softmax over types of each word vector (..., d) -> (..., types)."""
        return ops.softmax(ops.matmul(word_vectors, self.type_kernel) + self.type_bias, axis=-1)

    def _score(self, embedding, word_vectors, equation_plain, equation_types):
        unit_words = _unit(word_vectors)
        embedding = ops.cast(embedding, "float32")
        if self.types == 1:
            return ops.einsum(equation_plain, _unit(embedding), unit_words)
        sub = _unit(ops.reshape(embedding, (-1, self.types, self.dim)))
        per_type = ops.einsum(equation_types, sub, unit_words)
        return ops.sum(per_type * self.type_distribution(word_vectors), axis=-1)

    def score_ids(self, embedding, ids):
        """Scores of the words `ids` (batch, m) for each image: (batch, m)."""
        vectors = ops.take(self.words, ids, axis=0)
        return self._score(embedding, vectors, "bd,bmd->bm", "btd,bmd->bmt")

    def scores(self, embedding):
        """Scores of every vocabulary word: (batch, K)."""
        return self._score(embedding, self.words, "bd,kd->bk", "btd,kd->bkt")

    def sampled_logits(self, embedding, positive, negatives):
        """Logits of [positive, negatives...] with accidental hits masked: (batch, 1 + n)."""
        positive = ops.cast(positive, "int32")
        negatives = ops.cast(negatives, "int32")
        ids = ops.concatenate([positive[:, None], negatives], axis=1)
        logits = self.score_ids(embedding, ids)
        hit = ops.concatenate([ops.zeros_like(positive[:, None], "bool"), ops.equal(negatives, positive[:, None])],
                              axis=1)
        return ops.where(hit, _MASKED, logits)

    # Sampling ---------------------------------------------------------------------------------
    def sample_negatives(self, positive):
        """(batch, negatives) word ids: uniform, plus `close_negatives` near the positive."""
        batch = ops.shape(positive)[0]
        uniform = keras.random.randint((batch, self.negatives - self.close_negatives), 0, self.vocabulary_size,
                                       seed=self.seed_generator, dtype="int32")
        if not self.close_negatives:
            return uniform
        unit = _unit(ops.stop_gradient(self.words))
        similarity = ops.matmul(ops.take(unit, positive, axis=0), ops.transpose(unit))
        similarity = ops.where(ops.one_hot(positive, self.vocabulary_size) > 0, -2.0, similarity)
        _, nearest = ops.top_k(similarity, self.close_pool)
        # A random `close_negatives` of the `close_pool` nearest: rank random keys.
        keys = keras.random.uniform((batch, self.close_pool), seed=self.seed_generator)
        _, pick = ops.top_k(keys, self.close_negatives)
        close = ops.take_along_axis(nearest, pick, axis=1)
        return ops.concatenate([ops.cast(close, "int32"), uniform], axis=1)

    def call(self, inputs, training=None):
        embedding, positive = inputs
        positive = ops.cast(ops.reshape(positive, (-1,)), "int32")
        negatives = self.sample_negatives(positive)
        logits = self.sampled_logits(embedding, positive, negatives)
        if self.types > 1 and (self.type_weight or self.entropy_weight):
            self.add_loss(self._type_loss(ops.concatenate([positive[:, None], negatives], axis=1)))
        return logits

    def _type_loss(self, ids):
        """Cross-entropy of the type head on lexicon words, entropy on the others (mean over `ids`)."""
        p = self.type_distribution(ops.take(self.words, ids, axis=0))
        known = ops.take(self.word_types, ids, axis=0)
        log_p = ops.log(p + 1e-9)
        cross = -ops.sum(ops.one_hot(ops.maximum(known, 0), self.types) * log_p, axis=-1)
        entropy = -ops.sum(p * log_p, axis=-1)
        typed = ops.cast(known >= 0, "float32")
        count = ops.cast(ops.size(known), "float32")
        return (self.type_weight * ops.sum(typed * cross) + self.entropy_weight * ops.sum((1 - typed) * entropy)) / count

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 1 + self.negatives)

    def get_config(self):
        config = super().get_config()
        config.update(vocabulary_size=self.vocabulary_size, negatives=self.negatives,
                      close_negatives=self.close_negatives, close_pool=self.close_pool, types=self.types,
                      type_weight=self.type_weight, entropy_weight=self.entropy_weight, seed=self.seed)
        return config
