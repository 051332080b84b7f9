"""The network MAML meta-learns (Finn et al., 2017): a trunk, an embedding and an N-way classifier head.

Trained by `visnet.training.maml` (`python -m visnet.train --arch maml`): the whole network's
initial weights are meta-learned so that a few gradient steps on an episode's support set
classify its queries. For retrieval and nearest-prototype few-shot evaluation the run's model
is the part up to the `embedding` layer, like every architecture's.
"""

from __future__ import annotations

import keras
from keras import layers

from visnet.models.protonet import build_protonet


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
    # The prototypical network's embedding (trunk -> flatten -> optional projection), plus the head.
    base = build_protonet(input_shape, embedding_dim, backbone, weights, trainable, remove_top, backbone_options)
    logits = layers.Dense(ways, name="classifier", dtype="float32")(base.output)
    return keras.Model(base.input, logits, name="maml")
