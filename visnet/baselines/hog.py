"""Histogram of Oriented Gradients (Dalal & Triggs, 2005) as an embedder: the papers' HOG baseline.

The Navee report classifies HOG vectors with k-NN or an MLP; here HOG is an embedder like any
trained model, so the same retrieval, k-NN and few-shot evaluation applies to it.
"""

from __future__ import annotations

import cv2
import numpy as np

from visnet.baselines.common import check_bool, check_int, check_size, l2_normalize, to_uint8
from visnet.data.image_spec import ImageSpec


class HOGEmbedder:
    """OpenCV HOG of the grey image, L2-normalised.

    Args:
        image_size: (int, int). Height and width of the images (the HOG window).
        block: int. Block side in pixels.
        stride: int. Block stride in pixels.
        cell: int. Cell side in pixels.
        bins: int. Orientation bins.
        normalize: bool. L2-normalise each vector (on by default).

    With the defaults on 128x96 images the vector has 11 x 15 blocks x 4 cells x 9 bins = 5940
    values.

    Example:

    >>> embed = HOGEmbedder(image_size=(32, 32))
    >>> embed(np.zeros((2, 32, 32, 3), np.uint8)).shape
    (2, 324)
    """

    #: HOG works at the data's own resolution: `visnet.evaluate` passes the protocol's image size.
    follows_data_size = True

    def __init__(
        self,
        image_size: tuple[int, int] = (128, 96),
        block: int = 16,
        stride: int = 8,
        cell: int = 8,
        bins: int = 9,
        normalize: bool = True,
    ):
        height, width = check_size(image_size)
        block, stride, cell, bins = (check_int(v, n) for v, n in
                                     ((block, "block"), (stride, "stride"), (cell, "cell"), (bins, "bins")))
        normalize = check_bool(normalize, "normalize")
        if block % cell:
            raise ValueError(f"block must be a multiple of cell. Received: block={block}, cell={cell}")
        for name, side in (("height", height), ("width", width)):
            if side < block or (side - block) % stride:
                raise ValueError(
                    f"Image {name} {side} does not fit HOG blocks of {block} with stride {stride}: "
                    f"it must be {block} + a multiple of {stride} (e.g. 128x96 or 64x64)."
                )
        self.image_size = (height, width)
        self.block, self.stride, self.cell, self.bins, self.normalize = block, stride, cell, bins, normalize
        self.image_spec = ImageSpec(height=height, width=width, resize="pad", normalization="none")
        self._descriptor = cv2.HOGDescriptor((width, height), (block, block), (stride, stride), (cell, cell), bins)
        self.dim = int(self._descriptor.getDescriptorSize())

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(batch, height, width, 3) RGB in [0, 255] -> (batch, dim) float32."""
        pixels = to_uint8(images, self.image_size)
        out = np.empty((len(pixels), self.dim), np.float32)
        for i, image in enumerate(pixels):
            grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            out[i] = self._descriptor.compute(grey).reshape(-1)
        return l2_normalize(out) if self.normalize else out

    def get_config(self) -> dict:
        return {
            "name": "hog",
            "image_size": list(self.image_size),
            "block": self.block,
            "stride": self.stride,
            "cell": self.cell,
            "bins": self.bins,
            "normalize": self.normalize,
        }
