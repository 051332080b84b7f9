"""Random augmentation used in the papers: horizontal flip, small rotation, random crop, colour jitter.

It works on whole batches: flip, rotation and crop are composed into one projective transform
per image (a single resampling op for the batch), and the colour jitter is element-wise. Every
draw comes from one stateless seed per batch, so a run (and a resumed run) sees the same
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
        crop: float. The random crop keeps a side fraction drawn from [crop, 1] and is resized
            back to the full image (1 switches it off).
        brightness: float. Maximum brightness shift, as a fraction of the [0, 255] range.
        contrast: float. Contrast factor drawn from [1 - contrast, 1 + contrast].
        saturation: float. Saturation factor drawn from [1 - saturation, 1 + saturation].
        hue: float. Maximum hue shift (fraction of the colour circle, at most 0.5).
        grey: float. Probability of turning an image grey (shape over colour).
        fill_value: float. Value of pixels the rotation uncovers (white background).
    """

    flip: bool = True
    rotation: float = 10.0
    crop: float = 0.85
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.02
    grey: float = 0.0
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
        if not 0 <= self.grey <= 1:
            raise ValueError(f"grey must be a probability in [0, 1]. Received: grey={self.grey}")


def transform(images: tf.Tensor, scale, angle, flip, offset, fill_value: float = 255.0) -> tf.Tensor:
    """Crops, rotates and flips a batch with one projective transform per image.

    Args:
        images: (batch, h, w, 3) float32.
        scale: (batch,) side fraction of the crop window (1 = whole image).
        angle: (batch,) rotation in radians, about the image centre.
        flip: (batch,) bool, mirror left-right.
        offset: (batch, 2) top-left (y, x) of the crop window, in pixels: the window spans
            offset + scale * [0, side - 1], inside the image for offsets up to (1 - scale)(side - 1).
        fill_value: value of pixels from outside the image.

    Output pixel (x, y) samples the input at F(R(S(x, y))): S maps the output onto the crop
    window, R rotates about the centre, F mirrors.
    """
    height, width = images.shape[1], images.shape[2]
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
    oy, ox = offset[:, 0], offset[:, 1]
    a0, a1 = cos, -sin
    a2 = tf.cos(angle) * (ox - cx) - tf.sin(angle) * (oy - cy) + cx
    b0, b1 = sin, cos
    b2 = tf.sin(angle) * (ox - cx) + tf.cos(angle) * (oy - cy) + cy
    sign = tf.where(flip, -1.0, 1.0)
    a0, a1 = a0 * sign, a1 * sign
    a2 = tf.where(flip, (width - 1) - a2, a2)
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=fill_value, interpolation="BILINEAR", fill_mode="CONSTANT")


def augment_batch(images: tf.Tensor, seed: tf.Tensor, config: Augmentation) -> tf.Tensor:
    """Augments a (batch, h, w, 3) float32 batch of RGB in [0, 255]; same shape out.

    Args:
        images: tensor with static height and width.
        seed: int tensor of shape (2,). The same seed gives the same batch.
        config: `Augmentation`.
    """
    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    u = tf.random.stateless_uniform(tf.stack([batch, 8]), tf.cast(seed, tf.int64))
    if config.crop < 1 or config.rotation > 0 or config.flip:
        scale = config.crop + (1.0 - config.crop) * u[:, 0]
        offset = tf.stack([(1.0 - scale) * (height - 1) * u[:, 1], (1.0 - scale) * (width - 1) * u[:, 2]], axis=1)
        angle = (2.0 * u[:, 3] - 1.0) * (config.rotation * math.pi / 180.0)
        flip = tf.logical_and(tf.constant(bool(config.flip)), u[:, 4] < 0.5)
        images = transform(images, scale, angle, flip, offset, config.fill_value)
    x = images / 255.0
    shape = tf.stack([batch, 1, 1, 1])
    if config.brightness > 0:
        x = x + tf.reshape((2.0 * u[:, 5] - 1.0) * config.brightness, shape)
    if config.contrast > 0:
        mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        x = (x - mean) * tf.reshape(1.0 + (2.0 * u[:, 6] - 1.0) * config.contrast, shape) + mean
    if config.saturation > 0 or config.hue > 0:
        x = tf.clip_by_value(x, 0.0, 1.0)
        hsv = tf.image.rgb_to_hsv(x)
        h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
        draws = tf.random.stateless_uniform(tf.stack([batch, 2]), tf.cast(seed, tf.int64) + 1)
        if config.saturation > 0:
            s = tf.clip_by_value(s * tf.reshape(1.0 + (2.0 * draws[:, 0] - 1.0) * config.saturation, [-1, 1, 1]), 0, 1)
        if config.hue > 0:
            h = tf.math.floormod(h + tf.reshape((2.0 * draws[:, 1] - 1.0) * config.hue, [-1, 1, 1]), 1.0)
        x = tf.image.hsv_to_rgb(tf.stack([h, s, v], axis=-1))
    if config.grey > 0:
        luma = tf.reduce_sum(x * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
        x = tf.where(tf.reshape(u[:, 7] < config.grey, shape), tf.tile(luma, [1, 1, 1, 3]), x)
    out = tf.clip_by_value(x * 255.0, 0.0, 255.0)
    out.set_shape([None, height, width, 3])
    return out
