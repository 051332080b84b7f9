"""Weak-label image-text model (Corbière's internship report; Joulin et al. 2015): an image
embedding trained to predict the words of a product's own catalogue text.

The architecture is the image side: backbone -> pooling -> Dense(embedding_dim) (W₁ of the
low-rank word matrix W = W₁·W₂, inner size S = `embedding_dim`) -> L2 normalisation. The word
side, W₂, is the `WordScores` head that `visnet.train` adds for the `sampled-softmax` loss
(`words_head`); runs keep both, so a trained run embeds images (retrieval) and scores words
(tagging, text -> image search).

With `types = 4` (pseudo-attention) the image embedding is 4 sub-vectors of size
`embedding_dim` (clothing type, colour, texture, style), each L2-normalised; the whole vector
is scaled to unit length for retrieval.
"""

from __future__ import annotations

import keras
from keras import layers

from visnet.layers import WordScores
from visnet.models.common import POOLINGS, embedding_head, image_input, trunk


def build_weakly(
    input_shape=(128, 96, 3),
    embedding_dim: int | None = 400,
    backbone: str = "resnet50",
    weights: str | None = None,
    trainable: str | int = "all",
    remove_top: int = 0,
    backbone_options: dict | None = None,
    types: int = 1,
    pooling: str = "avg",
    batch_norm: bool = True,
) -> keras.Model:
    """Backbone -> pooling -> Dense(types * embedding_dim) -> L2 normalisation (per sub-vector).

    Args:
        embedding_dim: int or None. Inner size S of the low-rank word matrix (the report used
            400); None: full rank, the embedding is the pooled trunk features themselves.
        backbone: str. Image trunk (ResNet50 as in the report; any `visnet.backbones` name).
        types: int. 1, or the number of fashion-type sub-vectors of the pseudo-attention head.
        pooling: str. One of `POOLINGS`.
        batch_norm: bool. Batch-normalise the trunk's feature map before pooling.
    """
    if types < 1:
        raise ValueError(f"types must be >= 1. Received: types={types}")
    inputs = image_input(input_shape)
    features = trunk(inputs, backbone, weights, trainable, remove_top, backbone_options)
    if batch_norm:
        # Centres the pooled features: their shared component (a white background, a trunk
        # without pretrained weights) otherwise swamps what tells images apart.
        features = layers.BatchNormalization(momentum=0.9, name="feature_norm")(features)
    if types == 1 and embedding_dim is None:  # full rank: the word vectors live in the trunk's feature space
        if pooling not in ("avg", "max"):
            raise ValueError(f"A full-rank embedding takes pooling avg or max. Received: pooling={pooling!r}")
        pool = layers.GlobalAveragePooling2D if pooling == "avg" else layers.GlobalMaxPooling2D
        pooled = pool(name="pool")(features)
        return keras.Model(inputs, layers.UnitNormalization(name="embedding", dtype="float32")(pooled), name="weakly")
    if types == 1:
        return keras.Model(inputs, embedding_head(features, embedding_dim, 0.0, pooling), name="weakly")
    if embedding_dim is None or embedding_dim < 1:
        raise ValueError(f"embedding_dim must be >= 1 with types > 1. Received: embedding_dim={embedding_dim}")
    if pooling not in POOLINGS or pooling == "flatten":
        raise ValueError(f"pooling must be avg, max or avgmax with types > 1. Received: pooling={pooling!r}")
    pooled = embedding_head(features, types * embedding_dim, 0.0, pooling, name="unnormalized")
    sub = layers.Reshape((types, embedding_dim), name="types")(pooled)
    sub = layers.UnitNormalization(axis=-1, name="type_normalization")(sub)
    flat = layers.Flatten(name="flat")(sub)
    embedding = layers.Rescaling(types ** -0.5, name="embedding", dtype="float32")(flat)
    return keras.Model(inputs, embedding, name="weakly")


def words_head(model: keras.Model, vocabulary_size: int, negatives: int = 100, close_negatives: int = 0,
               types: int = 1, word_types=None, seed: int = 0) -> keras.Model:
    """The training model: (image, positive word id) -> logits of [positive, sampled negatives].

    `word_types`: the lexicon type of each word (-1 unknown) for the pseudo-attention head.
    """
    word = keras.Input((), dtype="int32", name="word")
    head = WordScores(vocabulary_size, negatives=negatives, close_negatives=close_negatives,
                      close_pool=max(10, close_negatives), types=types, seed=seed, name="word_scores")
    logits = head([model.output, word])
    if types > 1 and word_types is not None:
        head.set_word_types(word_types)
    return keras.Model([model.input, word], logits, name=model.name)
