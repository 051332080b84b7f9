"""Capsule layers (Sabour, Frosst & Hinton, "Dynamic Routing Between Capsules", NeurIPS 2017)."""

from __future__ import annotations

import keras
from keras import ops


def squash(s, axis: int = -1, epsilon: float = 1e-7):
    """v = |s|^2 / (1 + |s|^2) * s / |s|: keeps the direction, maps the length into [0, 1)."""
    squared = ops.sum(ops.square(s), axis=axis, keepdims=True)
    return squared / (1.0 + squared) * s / ops.sqrt(squared + epsilon)


@keras.saving.register_keras_serializable(package="visnet")
class PrimaryCapsules(keras.layers.Layer):
    """A convolution whose output channels are grouped into capsules, then squashed.

    Args:
        capsules: int. Capsule types per position (channels = capsules x dim).
        dim: int. Length of each capsule vector.
        kernel_size: int. Convolution kernel.
        strides: int. Convolution strides.

    Input (batch, h, w, c) -> output (batch, h' * w' * capsules, dim).
    """

    def __init__(self, capsules: int = 16, dim: int = 8, kernel_size: int = 3, strides: int = 2, **kwargs):
        super().__init__(**kwargs)
        if min(capsules, dim, kernel_size, strides) < 1:
            raise ValueError(f"capsules, dim, kernel_size and strides must be >= 1. Received: "
                             f"{capsules}, {dim}, {kernel_size}, {strides}")
        self.capsules, self.dim, self.kernel_size, self.strides = capsules, dim, kernel_size, strides
        self.conv = keras.layers.Conv2D(capsules * dim, kernel_size, strides=strides, padding="same",
                                        name="conv")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.built = True

    def call(self, inputs):
        x = self.conv(inputs)
        return squash(ops.reshape(x, (ops.shape(x)[0], -1, self.dim)))

    def compute_output_shape(self, input_shape):
        h = None if input_shape[1] is None else -(-input_shape[1] // self.strides)
        w = None if input_shape[2] is None else -(-input_shape[2] // self.strides)
        n = None if h is None or w is None else h * w * self.capsules
        return (input_shape[0], n, self.dim)

    def get_config(self):
        config = super().get_config()
        config.update(capsules=self.capsules, dim=self.dim, kernel_size=self.kernel_size, strides=self.strides)
        return config


@keras.saving.register_keras_serializable(package="visnet")
class ClassCapsules(keras.layers.Layer):
    """Fully connected capsules with routing by agreement.

    Every input capsule i predicts each output capsule j as u_j|i = W_ij u_i; routing
    iterates c_ij = softmax_j(b_ij), s_j = sum_i c_ij u_j|i, v_j = squash(s_j),
    b_ij += u_j|i . v_j.

    Args:
        capsules: int. Output capsules.
        dim: int. Output capsule length.
        routings: int. Routing iterations (3 in the paper).

    Input (batch, n_in, d_in) -> output (batch, capsules, dim).
    """

    def __init__(self, capsules: int = 16, dim: int = 8, routings: int = 3, **kwargs):
        super().__init__(**kwargs)
        if min(capsules, dim, routings) < 1:
            raise ValueError(f"capsules, dim and routings must be >= 1. Received: {capsules}, {dim}, {routings}")
        self.capsules, self.dim, self.routings = capsules, dim, routings

    def build(self, input_shape):
        n_in, d_in = input_shape[1], input_shape[2]
        if n_in is None:
            raise ValueError("ClassCapsules needs a known number of input capsules (a fixed image size).")
        self.kernel = self.add_weight(
            name="kernel", shape=(n_in, self.capsules, d_in, self.dim),
            initializer=keras.initializers.RandomNormal(stddev=0.05),
        )
        self.built = True

    def call(self, inputs):
        # u_hat[b, i, j, :] = u[b, i, :] @ W[i, j], as one batched matmul over the input capsules
        # (einsum here crashes TensorFlow's oneDNN kernel in training, TF 2.21).
        n_in, d_in = self.kernel.shape[0], self.kernel.shape[2]
        weights = ops.reshape(ops.transpose(self.kernel, (0, 2, 1, 3)), (n_in, d_in, self.capsules * self.dim))
        u_hat = ops.matmul(ops.transpose(inputs, (1, 0, 2)), weights)  # (i, b, j * e)
        u_hat = ops.transpose(ops.reshape(u_hat, (n_in, -1, self.capsules, self.dim)), (1, 0, 2, 3))
        logits = ops.zeros(ops.shape(u_hat)[:3], dtype=u_hat.dtype)  # b[b, i, j]
        for iteration in range(self.routings):
            coupling = ops.softmax(logits, axis=2)
            outputs = squash(ops.sum(ops.expand_dims(coupling, -1) * u_hat, axis=1))  # (b, j, e)
            if iteration < self.routings - 1:
                logits = logits + ops.sum(u_hat * ops.expand_dims(outputs, 1), axis=-1)
        return outputs

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.capsules, self.dim)

    def get_config(self):
        config = super().get_config()
        config.update(capsules=self.capsules, dim=self.dim, routings=self.routings)
        return config


@keras.saving.register_keras_serializable(package="visnet")
class CapsuleLength(keras.layers.Layer):
    """Length of each capsule vector: (batch, n, dim) -> (batch, n); the capsule's presence."""

    def call(self, inputs):
        return ops.sqrt(ops.sum(ops.square(inputs), axis=-1) + 1e-9)

    def compute_output_shape(self, input_shape):
        return input_shape[:-1]
