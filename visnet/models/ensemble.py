"""Several trained embedding models as one model.

Two runs of one recipe with different seeds make different mistakes; their embeddings side by
side rank better than either (README, "Two seeds as one model"). The ensemble's embedding is

    [ e_1(x) / sqrt(n) , ... , e_n(x) / sqrt(n) ]      (each e_i at unit length)

so its squared distances are the mean of the members' and it is at unit length, as every visnet
embedding is: an index, a gallery or a server takes it like any other. It is one Keras model
over one image input, so export and serving get it whole.
"""

from __future__ import annotations

import keras


def ensemble_model(models: list[keras.Model], name: str = "ensemble") -> keras.Model:
    """One model whose embedding is the members' unit-length embeddings concatenated, at unit length.

    Args:
        models: two or more image -> embedding models with the same input shape. They are renamed
            `member_0`, `member_1`, ... (their layer names may clash otherwise).
        name: str. The model's name.
    """
    models = list(models)
    if len(models) < 2:
        raise ValueError(f"An ensemble needs at least 2 models. Received: {len(models)}")
    shapes = [tuple(model.inputs[0].shape[1:]) for model in models]
    if len(set(shapes)) > 1:
        raise ValueError(f"The models of an ensemble must take the same input. Received input shapes: {shapes}")
    inputs = keras.Input(shapes[0], name="image")
    parts = []
    for i, model in enumerate(models):
        model.name = f"member_{i}"
        parts.append(keras.layers.UnitNormalization(name=f"member_{i}_unit")(model(inputs)))
    joined = keras.layers.Concatenate(name="members")(parts)
    return keras.Model(inputs, keras.layers.UnitNormalization(name="embedding")(joined), name=name)
