"""How an encoded image becomes a model input: size, resize mode, normalisation (no TensorFlow here)."""

from __future__ import annotations

import dataclasses

RESIZE_MODES = ("pad", "crop", "stretch")

#: Normalisation modes: what the pipeline hands the model, from RGB pixels in [0, 255].
NORMALIZATIONS = {
    "none": "RGB in [0, 255] (HOG, raw pixels, models with their own Rescaling layer)",
    "unit": "RGB in [0, 1]",
    "symmetric": "RGB in [-1, 1] (keras.applications 'tf' mode: MobileNet, Inception)",
    "caffe": "BGR minus the ImageNet mean (keras.applications VGG16, ResNet50)",
    "torch": "RGB in [0, 1], minus the ImageNet mean, divided by its std",
}


def parse_size(text: str) -> tuple[int, int]:
    """Parses `HEIGHTxWIDTH` (e.g. `128x96`) into (height, width)."""
    try:
        height, width = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"Image size must look like HEIGHTxWIDTH, e.g. 128x96. Received: {text!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"Image size must be positive. Received: {text!r}")
    return height, width


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """How an encoded image becomes a model input.

    Args:
        height, width: int. Output size in pixels.
        resize: str. `pad` fits the whole image and pads the rest with `pad_value`; `crop`
            fills the output and cuts the centre; `stretch` ignores the aspect ratio.
        pad_value: float. Padding (and transparent-pixel background) value in [0, 255];
            white by default, the background of catalogue photos.
        normalization: str. One of `NORMALIZATIONS`.
    """

    height: int = 128
    width: int = 96
    resize: str = "pad"
    pad_value: float = 255.0
    normalization: str = "none"

    def __post_init__(self):
        if self.height < 1 or self.width < 1:
            raise ValueError(f"height and width must be >= 1. Received: {self.height}x{self.width}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}. Received: resize={self.resize!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {sorted(NORMALIZATIONS)}. "
                f"Received: normalization={self.normalization!r}"
            )
        if not 0 <= self.pad_value <= 255:
            raise ValueError(f"pad_value must be in [0, 255]. Received: pad_value={self.pad_value}")

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
