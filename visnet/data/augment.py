"""Random augmentation used in the papers: horizontal flip, small rotation, random crop, colour jitter.

Every operation is stateless and seeded, so a run (and a resumed run) sees the same
augmented images for the same seed.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Strength of each augmentation; 0 (or False) switches one off.

    Args:
        flip: bool. Random horizontal flip (garments are left-right symmetric enough).
        rotation: float. Maximum rotation in degrees, either way.
        crop: float. The random crop keeps a side fraction drawn from [crop, 1], then resizes
            back (1 switches it off).
        brightness: float. Maximum brightness shift, as a fraction of the [0, 255] range.
        contrast: float. Contrast factor drawn from [1 - contrast, 1 + contrast].
        saturation: float. Saturation factor drawn from [1 - saturation, 1 + saturation].
        hue: float. Maximum hue shift (fraction of the colour circle, at most 0.5).
        fill_value: float. Value of pixels uncovered by the rotation (white background).
    """

    flip: bool = True
    rotation: float = 10.0
    crop: float = 0.85
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.02
    fill_value: float = 255.0

    def __post_init__(self):
        if not 0 < self.crop <= 1:
            raise ValueError(f"crop must be in (0, 1]. Received: crop={self.crop}")
        if not 0 <= self.rotation <= 180:
            raise ValueError(f"rotation must be in [0, 180] degrees. Received: rotation={self.rotation}")
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1). Received: {name}={value}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5]. Received: hue={self.hue}")


def _rotate(image: tf.Tensor, angle: tf.Tensor, fill_value: float) -> tf.Tensor:
    """Rotates an (h, w, 3) image by `angle` radians about its centre."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2).
    transform = tf.stack(
        [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0]
    )
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform[None],
        output_shape=tf.shape(image)[:2],
        fill_value=fill_value,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    return out[0]


def augment_image(image: tf.Tensor, seed: tf.Tensor, config: Augmentation) -> tf.Tensor:
    """Augments one (h, w, 3) float32 image in [0, 255]; same size out.

    Args:
        image: tensor. RGB in [0, 255], static height and width.
        seed: int tensor of shape (2,). Stateless seed; the same seed gives the same image.
        config: `Augmentation`.
    """
    height, width = image.shape[0], image.shape[1]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=8)
    if config.crop < 1:
        fraction = tf.random.stateless_uniform([], seeds[0], config.crop, 1.0)
        crop_h = tf.maximum(1, tf.cast(tf.round(fraction * height), tf.int32))
        crop_w = tf.maximum(1, tf.cast(tf.round(fraction * width), tf.int32))
        image = tf.image.stateless_random_crop(image, tf.stack([crop_h, crop_w, 3]), seeds[1])
        image = tf.image.resize(image, [height, width])
    if config.rotation > 0:
        limit = config.rotation * math.pi / 180
        angle = tf.random.stateless_uniform([], seeds[2], -limit, limit)
        image = _rotate(image, angle, config.fill_value)
    if config.flip:
        image = tf.image.stateless_random_flip_left_right(image, seeds[3])
    unit = image / 255.0
    if config.brightness > 0:
        unit = tf.image.stateless_random_brightness(unit, config.brightness, seeds[4])
    if config.contrast > 0:
        unit = tf.image.stateless_random_contrast(unit, 1 - config.contrast, 1 + config.contrast, seeds[5])
    if config.saturation > 0:
        unit = tf.image.stateless_random_saturation(unit, 1 - config.saturation, 1 + config.saturation, seeds[6])
    if config.hue > 0:
        unit = tf.image.stateless_random_hue(unit, config.hue, seeds[7])
    image = tf.clip_by_value(unit * 255.0, 0.0, 255.0)
    image.set_shape([height, width, 3])
    return image
