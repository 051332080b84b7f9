"""The capsule margin loss (Sabour, Frosst & Hinton 2017)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="visnet")
class CapsuleMarginLoss(keras.losses.Loss):
    """`T_k max(0, m+ - |v_k|)^2 + lambda (1 - T_k) max(0, |v_k| - m-)^2`, summed over classes k.

    Args:
        m_plus: float. Target length of the true class's capsule.
        m_minus: float. Upper bound on the other capsules' lengths.
        down_weight: float. lambda, the weight of the absent classes.

    `y_true` holds integer class ids, `y_pred` the class capsule lengths (batch, classes).

    Reference: Sabour, Frosst & Hinton, "Dynamic Routing Between Capsules", NeurIPS 2017.
    """

    def __init__(self, m_plus: float = 0.9, m_minus: float = 0.1, down_weight: float = 0.5,
                 name: str = "capsule_margin_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0 <= m_minus < m_plus <= 1:
            raise ValueError(f"Need 0 <= m_minus < m_plus <= 1. Received: m_plus={m_plus}, m_minus={m_minus}")
        self.m_plus, self.m_minus, self.down_weight = m_plus, m_minus, down_weight

    def call(self, y_true, y_pred):
        lengths = ops.cast(y_pred, "float32")
        targets = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), ops.shape(lengths)[-1])
        present = targets * ops.square(ops.relu(self.m_plus - lengths))
        absent = self.down_weight * (1.0 - targets) * ops.square(ops.relu(lengths - self.m_minus))
        return ops.mean(ops.sum(present + absent, axis=-1))

    def get_config(self):
        config = super().get_config()
        config.update(m_plus=self.m_plus, m_minus=self.m_minus, down_weight=self.down_weight)
        return config
