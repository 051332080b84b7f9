"""HOG (Dalal & Triggs, 2005) as a Keras layer: OpenCV's descriptor in `keras.ops`.

The OpenCV HOG baseline (`visnet.baselines.hog`) runs in NumPy, image by image. This layer
computes the same vector inside a model, on whole batches, so it can be exported and served
like any other Keras model, and so a learned embedding can carry a HOG part (the `hybrid`
architecture).

How it matches OpenCV's `HOGDescriptor` (unsigned gradients, L2-Hys, default window sigma):
centred [-1, 0, 1] derivatives of the grey image with reflect-101 borders; each pixel's
magnitude split between its two nearest orientation bins; a block's histogram is a sum over
its pixels weighted by a Gaussian window and by bilinear weights to its 2 x 2 cells, which is
a strided depthwise convolution with fixed kernels; L2-Hys per block. Values agree with OpenCV
to about 1e-4 (OpenCV's arctangent is an approximation).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

#: OpenCV's fixed-point RGB -> grey for 8-bit images: ITU-R 601 weights in units of 2**-15.
GREY_WEIGHTS = (9798, 19235, 3735)


def block_kernels(block: int, cell: int, bins: int) -> np.ndarray:
    """The (block, block, bins, cells) depthwise kernel: Gaussian window x bilinear cell weights.

    Kernel [:, :, b, c] weighs bin b of every pixel of a block into cell c (cells in OpenCV's
    order, column-major: the cell at (row r, column q) is c = q * rows + r).
    """
    cells_per_side = block // cell
    sigma = block / 4.0  # OpenCV's default winSigma: (block width + block height) / 8
    offsets = np.arange(block, dtype=np.float64) - block * 0.5
    window = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma * sigma))
    # Bilinear weight of pixel i to cell index 0..cells_per_side-1 along one axis.
    position = (np.arange(block) + 0.5) / cell - 0.5
    first = np.floor(position).astype(int)
    frac = position - first
    axis = np.zeros((block, cells_per_side))
    for i in range(block):
        for index, weight in ((first[i], 1 - frac[i]), (first[i] + 1, frac[i])):
            if 0 <= index < cells_per_side:
                axis[i, index] += weight
    kernels = np.zeros((block, block, bins, cells_per_side * cells_per_side), np.float32)
    for q in range(cells_per_side):  # column
        for r in range(cells_per_side):  # row
            weights = window * axis[:, r][:, None] * axis[:, q][None, :]
            kernels[:, :, :, q * cells_per_side + r] = weights[:, :, None]
    return kernels


@keras.saving.register_keras_serializable(package="visnet")
class HOG(keras.layers.Layer):
    """Histogram of Oriented Gradients of RGB images: (batch, H, W, 3) -> (batch, dim).

    Args:
        block: int. Block side in pixels (default 16).
        stride: int. Block stride in pixels (default 8).
        cell: int. Cell side in pixels (default 8).
        bins: int. Unsigned orientation bins over 0-180 degrees (default 9).
        input_scale: float. Multiplies the input first, so pixels are in [0, 255]: 1 for raw
            pixels, 255 for images in [0, 1].
        normalize: bool. L2-normalise the whole vector (as `HOGEmbedder` does).

    The vector is laid out as OpenCV's (blocks column by column, cells column-major, bins), so on
    128x96 images with the defaults it has 11 x 15 x 4 x 9 = 5940 values, equal to
    `cv2.HOGDescriptor((96, 128), (16, 16), (8, 8), (8, 8), 9).compute(grey)` to about 1e-4.
    The layer has no weights.
    """

    def __init__(self, block: int = 16, stride: int = 8, cell: int = 8, bins: int = 9, input_scale: float = 1.0,
                 normalize: bool = True, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        for name, value in (("block", block), ("stride", stride), ("cell", cell), ("bins", bins)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
        if block % cell:
            raise ValueError(f"block must be a multiple of cell. Received: block={block}, cell={cell}")
        if bins < 2:
            raise ValueError(f"bins must be >= 2. Received: bins={bins}")
        if not input_scale > 0:
            raise ValueError(f"input_scale must be > 0. Received: input_scale={input_scale!r}")
        self.block, self.stride, self.cell, self.bins = block, stride, cell, bins
        self.input_scale, self.normalize = float(input_scale), bool(normalize)
        self._kernels = block_kernels(block, cell, bins)

    def _blocks(self, height: int, width: int) -> tuple[int, int]:
        for name, side in (("height", height), ("width", width)):
            if side < self.block or (side - self.block) % self.stride:
                raise ValueError(f"Image {name} {side} does not fit HOG blocks of {self.block} with stride "
                                 f"{self.stride}: it must be {self.block} + a multiple of {self.stride}.")
        return (height - self.block) // self.stride + 1, (width - self.block) // self.stride + 1

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] != 3:
            raise ValueError(f"HOG expects (batch, height, width, 3) images. Received: {tuple(input_shape)}")
        self._blocks(input_shape[1], input_shape[2])
        self.built = True

    def compute_output_shape(self, input_shape):
        rows, columns = self._blocks(input_shape[1], input_shape[2])
        return (input_shape[0], rows * columns * (self.block // self.cell) ** 2 * self.bins)

    def call(self, images):
        # As the OpenCV baseline: pixels rounded to 8 bits, then OpenCV's integer grey conversion
        # (exact in float32: the sums stay below 2**24). Equal to cv2.cvtColor on every pixel.
        x = ops.round(ops.clip(ops.cast(images, "float32") * self.input_scale, 0.0, 255.0))
        grey = ops.floor((x[..., 0] * GREY_WEIGHTS[0] + x[..., 1] * GREY_WEIGHTS[1] + x[..., 2] * GREY_WEIGHTS[2]
                          + 16384.0) / 32768.0)
        # Reflect-101 border (OpenCV's default): the row/column next to the edge, mirrored.
        padded = ops.concatenate([grey[:, 1:2], grey, grey[:, -2:-1]], axis=1)
        padded = ops.concatenate([padded[:, :, 1:2], padded, padded[:, :, -2:-1]], axis=2)
        dx = padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]
        dy = padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]
        magnitude = ops.sqrt(dx * dx + dy * dy)
        angle = ops.arctan2(dy, dx)  # (-pi, pi]; unsigned gradients fold it onto [0, pi)
        position = ops.mod(angle, math.pi) * (self.bins / math.pi) - 0.5
        lower = ops.floor(position)
        upper_weight = position - lower
        lower_bin = ops.mod(ops.cast(lower, "int32"), self.bins)
        upper_bin = ops.mod(lower_bin + 1, self.bins)
        votes = (ops.one_hot(lower_bin, self.bins) * ops.expand_dims(magnitude * (1 - upper_weight), -1)
                 + ops.one_hot(upper_bin, self.bins) * ops.expand_dims(magnitude * upper_weight, -1))
        # (batch, rows, cols, bins * cells): channel b * cells + c.
        blocks = ops.depthwise_conv(votes, ops.convert_to_tensor(self._kernels), strides=self.stride,
                                    padding="valid")
        rows, columns = blocks.shape[1], blocks.shape[2]
        cells = (self.block // self.cell) ** 2
        blocks = ops.reshape(blocks, (-1, rows, columns, self.bins, cells))
        # OpenCV's order: blocks column by column, then cells, then bins.
        blocks = ops.transpose(blocks, (0, 2, 1, 4, 3))
        blocks = ops.reshape(blocks, (-1, columns * rows, cells * self.bins))
        # L2-Hys as OpenCV: scale by 1 / (norm + 0.1 * size), clip at 0.2, renormalise.
        size = cells * self.bins
        norm = ops.sqrt(ops.sum(blocks * blocks, axis=-1, keepdims=True))
        blocks = ops.minimum(blocks / (norm + 0.1 * size), 0.2)
        norm = ops.sqrt(ops.sum(blocks * blocks, axis=-1, keepdims=True))
        blocks = blocks / (norm + 1e-3)
        vector = ops.reshape(blocks, (-1, columns * rows * size))
        if self.normalize:
            vector = vector / ops.maximum(ops.sqrt(ops.sum(vector * vector, axis=-1, keepdims=True)), 1e-12)
        return vector

    def get_config(self):
        config = super().get_config()
        config.update({"block": self.block, "stride": self.stride, "cell": self.cell, "bins": self.bins,
                       "input_scale": self.input_scale, "normalize": self.normalize})
        return config
