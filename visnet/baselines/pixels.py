"""Raw pixels as an embedder: the floor every learned embedding should beat."""

from __future__ import annotations

import numpy as np

from visnet.baselines.common import check_bool, check_size, l2_normalize, to_uint8
from visnet.data.image_spec import ImageSpec


class PixelEmbedder:
    """The image, downsized, flattened, centred and L2-normalised.

    Args:
        image_size: (int, int). Height and width the pipeline resizes to (small: 32x24).
        grey: bool. Use the grey image instead of RGB.
    """

    #: A fixed small size by design ("tiny images"), whatever the data's resolution.
    follows_data_size = False

    def __init__(self, image_size: tuple[int, int] = (32, 24), grey: bool = False):
        height, width = check_size(image_size)
        self.image_size, self.grey = (height, width), check_bool(grey, "grey")
        self.image_spec = ImageSpec(height=height, width=width, resize="pad", normalization="none")
        self.dim = height * width * (1 if grey else 3)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        pixels = to_uint8(images, self.image_size).astype(np.float32) / 255.0
        if self.grey:
            pixels = pixels @ np.array([0.299, 0.587, 0.114], np.float32)
        flat = pixels.reshape(len(pixels), -1)
        return l2_normalize(flat - flat.mean(axis=1, keepdims=True))

    def get_config(self) -> dict:
        return {"name": "pixels", "image_size": list(self.image_size), "grey": self.grey}
