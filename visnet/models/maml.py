"""The network MAML meta-learns (Finn et al., 2017): a trunk, an embedding and an N-way classifier head.

Trained by `visnet.training.maml` (`python -m visnet.train --arch maml`): the whole network's
initial weights are meta-learned so that a few gradient steps on an episode's support set
classify its queries. For retrieval and nearest-prototype few-shot evaluation the run's model
is the part up to the `embedding` layer, like every architecture's.
"""

from __future__ import annotations

import keras
from keras import layers

from visnet.models.common import image_input, trunk


def build_maml(
    input_shape=(128, 96, 3),
    ways: int = 5,
    embedding_dim: int = 0,
    backbone: str = "conv4",
    weights: str | None = None,
    trainable: str | int = "all",
    remove_top: int = 0,
    backbone_options: dict | None = None,
) -> keras.Model:
    """Backbone -> flatten (-> Dense(embedding_dim) when > 0) = `embedding` -> Dense(ways) logits.

    Args:
        ways: int. Classes per episode (the head's outputs).
        embedding_dim: int. 0 keeps the flattened features (as the paper's conv-4 network).
    """
    if ways < 2:
        raise ValueError(f"ways must be >= 2. Received: ways={ways}")
    inputs = image_input(input_shape)
    x = layers.Flatten(name="flatten")(trunk(inputs, backbone, weights, trainable, remove_top, backbone_options))
    if embedding_dim:
        x = layers.Dense(embedding_dim, name="projection")(x)
    embedding = layers.Activation("linear", name="embedding", dtype="float32")(x)
    logits = layers.Dense(ways, name="classifier", dtype="float32")(embedding)
    return keras.Model(inputs, logits, name="maml")
