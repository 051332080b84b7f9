"""Siamese embedding network (the Navee report, §5): any backbone, a linear layer, L2 normalisation.

One tower embeds every image; pairs (contrastive loss) and triplets (triplet loss with
mining) are formed in the loss, so "Siamese" and "triplet" networks share this model.
"""

from __future__ import annotations

import keras

from visnet.models.common import embedding_head, image_input, trunk


def build_siamese(
    input_shape=(128, 96, 3),
    embedding_dim: int = 128,
    backbone: str = "resnet18",
    weights: str | None = None,
    trainable: str | int = "all",
    remove_top: int = 0,
    backbone_options: dict | None = None,
    dropout: float = 0.0,
    pooling: str = "avg",
) -> keras.Model:
    """Backbone -> pooling -> dropout -> Dense(embedding_dim) -> L2 normalisation.

    `pooling` is `avg` (global average, the default), `max`, `avgmax` or `flatten` (keeps the
    spatial layout of the trunk's last feature map).

    Reference: Koch et al., "Siamese Neural Networks for One-shot Image Recognition", 2015;
    Hadsell et al. 2006 (contrastive loss); Schroff et al. 2015 (triplet loss).
    """
    inputs = image_input(input_shape)
    features = trunk(inputs, backbone, weights, trainable, remove_top, backbone_options)
    return keras.Model(inputs, embedding_head(features, embedding_dim, dropout, pooling), name="siamese")
