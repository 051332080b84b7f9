"""Random augmentation used in the papers: horizontal flip, small rotation, random crop, colour jitter;
and what turns a studio shot into a photo a person takes: a background instead of the studio
white, a perspective tilt, uneven light, and something in front of the product.

It works on whole batches: flip, rotation and crop are composed into one projective transform
per image (a single resampling op for the batch), and brightness, contrast, saturation, hue and
grey are composed into one affine colour map per image (a single contraction). Every
draw comes from one stateless seed per batch, so a run (and a resumed run) sees the same
augmented images for the same seed.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

#: The strengths of `Augmentation.photo()`: photos taken by people, not in a studio.
PHOTO_AUGMENTATION = {"background": 0.5, "perspective": 0.2, "lighting": 0.3, "occlusion": 0.3}


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
        background: float. Probability of replacing the near-white studio background (and the
            pixels the geometry uncovers) by a scene: a random colour gradient with sensor noise.
        perspective: float. Maximum perspective tilt, at most 0.45: the scale at the image's
            edges changes by up to this fraction (a photo taken at an angle; 0.3 is a strong tilt).
        lighting: float. Uneven light: a brightness ramp across the image in a random direction,
            from 1 - lighting to 1 + lighting, and a colour temperature shift of up to half that.
        occlusion: float. Probability of a rectangle of random colour (a hand, a tag, another
            object) covering 15-40% of the image's height and width at a random place.

    `Augmentation.photo()` is the setting for catalogues searched with customers' photos.
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
    background: float = 0.0
    perspective: float = 0.0
    lighting: float = 0.0
    occlusion: float = 0.0

    @classmethod
    def photo(cls, **overrides) -> Augmentation:
        """Studio shots made to look like photos taken by people (see the README's measurements)."""
        return cls(**{**PHOTO_AUGMENTATION, **overrides})

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
        for name in ("grey", "background", "occlusion"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1]. Received: {name}={value}")
        if not 0 <= self.perspective <= 0.45:
            raise ValueError(f"perspective must be in [0, 0.45]. Received: perspective={self.perspective}")
        if not 0 <= self.lighting < 1:
            raise ValueError(f"lighting must be in [0, 1). Received: lighting={self.lighting}")

    @property
    def geometric(self) -> bool:
        return self.crop < 1 or self.rotation > 0 or bool(self.flip) or self.perspective > 0


def transform(images: tf.Tensor, scale, angle, flip, offset, fill_value: float = 255.0, tilt=None) -> tf.Tensor:
    """Crops, rotates and flips a batch with one projective transform per image.

    Args:
        images: (batch, h, w, 3) float32.
        scale: (batch,) side fraction of the crop window (1 = whole image).
        angle: (batch,) rotation in radians, about the image centre.
        flip: (batch,) bool, mirror left-right.
        offset: (batch, 2) top-left (y, x) of the crop window, in pixels: the window spans
            offset + scale * [0, side - 1], inside the image for offsets up to (1 - scale)(side - 1).
        fill_value: value of pixels from outside the image.
        tilt: (batch, 2) or None. Perspective (x, y): the output pixel at normalised offset u
            from the centre (u in [-1, 1] across the image) samples at a scale of 1 + tilt . u.

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
    if tilt is not None:
        # Divide the affine map by k = 1 + c . (p - centre): the centre maps as before, one side
        # of the image is sampled wider than the other. Normalised so that the constant term is 1.
        c0, c1 = tilt[:, 0] / ((width - 1) / 2.0), tilt[:, 1] / ((height - 1) / 2.0)
        k0 = 1.0 - c0 * cx - c1 * cy
        transforms = tf.concat([transforms[:, :6], tf.stack([c0, c1], axis=1)], axis=1) / k0[:, None]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=fill_value, interpolation="BILINEAR", fill_mode="CONSTANT")


# ITU-R BT.601 luma, and RGB -> YIQ (whose I, Q plane holds the hue angle).
LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.595716, -0.274453, -0.321263), (0.211456, -0.522591, 0.311135))


def colour_matrix(contrast, saturation, hue, grey) -> tf.Tensor:
    """The per-image 3x3 matrix M (row vectors: rgb_out = rgb @ M) of the linear colour changes.

    Contrast scales, saturation blends with the luma grey (as PIL's `ImageEnhance.Color` and
    torchvision do), hue rotates the chroma plane of YIQ (luma kept) by `hue` turns, and `grey`
    (bool) replaces the colour by its luma. All are linear in RGB, so they compose into one
    matrix per image: one batched contraction instead of an RGB -> HSV -> RGB round trip per
    pixel (which cost three times the rest of the augmentation).

    Args:
        contrast, saturation, hue: (batch,) float32 factors (1, 1, 0 leave colours alone).
        grey: (batch,) bool.
    """
    luma = tf.constant(LUMA, tf.float32)
    eye = tf.eye(3)
    to_grey = tf.tile(luma[:, None], [1, 3])  # rgb @ to_grey = (y, y, y)
    sat = saturation[:, None, None]
    m = sat * eye + (1.0 - sat) * to_grey
    yiq = tf.constant(_RGB_TO_YIQ, tf.float32)
    theta = 2.0 * math.pi * hue
    cos, sin, one, zero = tf.cos(theta), tf.sin(theta), tf.ones_like(theta), tf.zeros_like(theta)
    rotation = tf.reshape(tf.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], axis=1), [-1, 3, 3])
    # Column vectors: yiq' = R @ yiq, rgb' = YIQ^-1 @ R @ YIQ @ rgb; transposed for row vectors.
    hue_m = tf.transpose(tf.linalg.inv(yiq) @ rotation @ yiq, [0, 2, 1])
    m = m @ hue_m
    m = tf.where(grey[:, None, None], m @ to_grey, m)
    return contrast[:, None, None] * m


def augment_batch(images: tf.Tensor, seed: tf.Tensor, config: Augmentation) -> tf.Tensor:
    """Augments a (batch, h, w, 3) batch of RGB in [0, 255] (float32 or uint8); float32 out, same shape.

    Args:
        images: tensor with static height and width.
        seed: int tensor of shape (2,). The same seed gives the same batch.
        config: `Augmentation`.

    Colours change as one affine map per image, `out = c * (x - mean) @ M + mean @ M + b`
    (contrast about the image's mean colour, then saturation, hue and grey, brightness `b` last),
    clipped to [0, 255].
    """
    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    u = tf.random.stateless_uniform(tf.stack([batch, 8]), tf.cast(seed, tf.int64))
    images = tf.cast(images, tf.float32)
    photo = tf.random.stateless_uniform(tf.stack([batch, 12]), tf.cast(seed, tf.int64) + 2)
    if config.geometric:
        scale = config.crop + (1.0 - config.crop) * u[:, 0]
        offset = tf.stack([(1.0 - scale) * (height - 1) * u[:, 1], (1.0 - scale) * (width - 1) * u[:, 2]], axis=1)
        angle = (2.0 * u[:, 3] - 1.0) * (config.rotation * math.pi / 180.0)
        flip = tf.logical_and(tf.constant(bool(config.flip)), u[:, 4] < 0.5)
        tilt = (2.0 * photo[:, 0:2] - 1.0) * config.perspective if config.perspective else None
        images = transform(images, scale, angle, flip, offset, config.fill_value, tilt)
    if config.background:
        images = replace_background(images, photo[:, 2] < config.background, photo[:, 3:6], photo[:, 6],
                                    tf.cast(seed, tf.int64) + 3)
    if config.occlusion:
        images = occlude(images, photo[:, 7] < config.occlusion, photo[:, 8:12], tf.cast(seed, tf.int64) + 4)
    if config.lighting:
        images = uneven_light(images, config.lighting, tf.random.stateless_uniform(
            tf.stack([batch, 3]), tf.cast(seed, tf.int64) + 5))
    if not (config.brightness or config.contrast or config.saturation or config.hue or config.grey):
        return images
    draws = tf.random.stateless_uniform(tf.stack([batch, 2]), tf.cast(seed, tf.int64) + 1)
    contrast = 1.0 + (2.0 * u[:, 6] - 1.0) * config.contrast
    saturation = 1.0 + (2.0 * draws[:, 0] - 1.0) * config.saturation
    hue = (2.0 * draws[:, 1] - 1.0) * config.hue
    grey = u[:, 7] < config.grey
    matrix = colour_matrix(contrast, saturation, hue, grey)
    mean = tf.reduce_mean(images, axis=[1, 2])  # (batch, 3)
    brightness = (2.0 * u[:, 5] - 1.0) * (config.brightness * 255.0)
    # (x - mean) * c @ M + mean @ M + b  ==  x @ (c M) + [mean @ M - mean @ (c M) + b]
    unscaled = matrix / contrast[:, None, None]
    offset = (tf.einsum("bc,bcd->bd", mean, unscaled) - tf.einsum("bc,bcd->bd", mean, matrix)
              + brightness[:, None])
    out = tf.einsum("bhwc,bcd->bhwd", images, matrix) + offset[:, None, None, :]
    out = tf.clip_by_value(out, 0.0, 255.0)
    out.set_shape([None, height, width, 3])
    return out


def _grid(height: int, width: int):
    """(y, x) coordinates in [-1, 1], shaped (1, h, w, 1)."""
    y = tf.linspace(-1.0, 1.0, height)[None, :, None, None]
    x = tf.linspace(-1.0, 1.0, width)[None, None, :, None]
    return y, x


def replace_background(images, apply, colour, angle, seed) -> tf.Tensor:
    """Replaces near-white pixels (the studio background: every channel above ~240, blended in
    over 238-250) of the images where `apply` holds by a scene: a gradient between two random
    colours along a random direction, with sensor noise.

    Args:
        images: (batch, h, w, 3) float32 in [0, 255].
        apply: (batch,) bool. colour: (batch, 3) uniform draws. angle: (batch,) uniform draw.
        seed: int64 tensor of shape (2,): the noise.
    """
    height, width = images.shape[1], images.shape[2]
    y, x = _grid(height, width)
    theta = 2.0 * math.pi * angle
    ramp = (tf.cos(theta)[:, None, None, None] * x + tf.sin(theta)[:, None, None, None] * y + 1.0) / 2.0
    first = 30.0 + 190.0 * colour  # (batch, 3): not studio white
    second = 30.0 + 190.0 * tf.roll(colour, 1, axis=1)
    scene = first[:, None, None, :] * (1.0 - ramp) + second[:, None, None, :] * ramp
    scene += 6.0 * tf.random.stateless_normal(tf.shape(images[..., :1]), seed)
    whiteness = tf.clip_by_value((tf.reduce_min(images, axis=-1, keepdims=True) - 238.0) / 12.0, 0.0, 1.0)
    mask = whiteness * tf.cast(apply, tf.float32)[:, None, None, None]
    return tf.clip_by_value(images * (1.0 - mask) + scene * mask, 0.0, 255.0)


def occlude(images, apply, draws, seed) -> tf.Tensor:
    """Covers a rectangle of 15-40% of each side (centre and size from `draws`, (batch, 4)) with one
    random colour, in the images where `apply` holds."""
    height, width = images.shape[1], images.shape[2]
    y, x = _grid(height, width)
    size_y = 0.15 + 0.25 * draws[:, 0]
    size_x = 0.15 + 0.25 * draws[:, 1]
    centre_y, centre_x = 2.0 * draws[:, 2] - 1.0, 2.0 * draws[:, 3] - 1.0
    inside = tf.logical_and(tf.abs(y - centre_y[:, None, None, None]) <= size_y[:, None, None, None],
                            tf.abs(x - centre_x[:, None, None, None]) <= size_x[:, None, None, None])
    inside = tf.logical_and(inside, apply[:, None, None, None])
    colour = tf.random.stateless_uniform(tf.stack([tf.shape(images)[0], 3]), seed, 0.0, 255.0)
    return tf.where(inside, colour[:, None, None, :], images)


def uneven_light(images, strength: float, draws) -> tf.Tensor:
    """A brightness ramp from 1 - strength to 1 + strength along a random direction, and a
    colour temperature shift (red against blue) of up to strength / 2; draws: (batch, 3)."""
    height, width = images.shape[1], images.shape[2]
    y, x = _grid(height, width)
    theta = 2.0 * math.pi * draws[:, 0]
    ramp = tf.cos(theta)[:, None, None, None] * x + tf.sin(theta)[:, None, None, None] * y  # [-1.4, 1.4]
    gain = 1.0 + strength * (2.0 * draws[:, 1] - 1.0)[:, None, None, None] * tf.clip_by_value(ramp, -1.0, 1.0)
    warmth = 0.5 * strength * (2.0 * draws[:, 2] - 1.0)
    tint = tf.stack([1.0 + warmth, tf.ones_like(warmth), 1.0 - warmth], axis=1)[:, None, None, :]
    return tf.clip_by_value(images * gain * tint, 0.0, 255.0)
