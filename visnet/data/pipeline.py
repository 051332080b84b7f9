"""tf.data pipelines: decode, resize keeping the aspect ratio, augment, normalise, batch, prefetch.

The same graph functions (`decode_image`, `resize_image`, `normalize_image`) run at training,
evaluation and export time, so a served model sees exactly the pixels it was trained on.

Example:

    spec = ImageSpec(height=128, width=96, resize="pad", normalization="caffe")
    ds = image_dataset(dataset.paths, dataset.label_ids(), spec, batch_size=32,
                       shuffle=True, augment=Augmentation())
    for batch in ds:  # {"image": (32, 128, 96, 3) float32, "label": (32,), "index": (32,)}
        ...
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf

from visnet.data.augment import Augmentation, augment_batch
from visnet.data.image_spec import NORMALIZATIONS, ImageSpec, parse_size  # noqa: F401

# Channel means/stds of ImageNet, as `keras.applications` preprocess them.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


# Graph functions ---------------------------------------------------------------------------
def decode_image(data: tf.Tensor, background: float = 255.0) -> tf.Tensor:
    """Decodes JPEG/PNG/GIF/BMP bytes to float32 RGB in [0, 255], shape (h, w, 3).

    Grey images are repeated to three channels; images with alpha are composited onto
    `background` (transparent pixels would otherwise keep arbitrary colours).
    """
    # JPEGs use the accurate integer IDCT: the same pixels as PIL and OpenCV (TF's default fast
    # IDCT differs by up to 4 levels, enough to move retrieval figures in the third decimal).
    image = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=0, expand_animations=False),
    )
    image = tf.cast(image, tf.float32)
    channels = tf.shape(image)[-1]

    def grey():
        return tf.tile(image[..., :1], [1, 1, 3])

    def grey_alpha():
        alpha = image[..., 1:2] / 255.0
        return tf.tile(image[..., :1] * alpha + background * (1.0 - alpha), [1, 1, 3])

    def rgb():
        return image[..., :3]

    def rgba():
        alpha = image[..., 3:4] / 255.0
        return image[..., :3] * alpha + background * (1.0 - alpha)

    image = tf.switch_case(channels - 1, branch_fns=[grey, grey_alpha, rgb, rgba])
    image.set_shape([None, None, 3])
    return image


def resize_image(image: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """Resizes an (h, w, 3) image to `spec.size` by `spec.resize`; identity when already that size."""
    target = tf.constant(spec.size, tf.int32)
    shape = tf.shape(image)[:2]
    shape_f = tf.cast(shape, tf.float32)
    target_f = tf.cast(target, tf.float32)

    def resize():
        if spec.resize == "stretch":
            out = tf.image.resize(image, target, antialias=True)
        elif spec.resize == "pad":
            scale = tf.reduce_min(target_f / shape_f)
            new = tf.clip_by_value(tf.cast(tf.round(shape_f * scale), tf.int32), 1, target)
            out = tf.image.resize(image, new, antialias=True)
            top = (target[0] - new[0]) // 2
            left = (target[1] - new[1]) // 2
            paddings = [[top, target[0] - new[0] - top], [left, target[1] - new[1] - left], [0, 0]]
            out = tf.pad(out, paddings, constant_values=spec.pad_value)
        else:  # crop
            scale = tf.reduce_max(target_f / shape_f)
            new = tf.maximum(tf.cast(tf.round(shape_f * scale), tf.int32), target)
            out = tf.image.resize(image, new, antialias=True)
            top = (new[0] - target[0]) // 2
            left = (new[1] - target[1]) // 2
            out = out[top : top + target[0], left : left + target[1]]
        return tf.clip_by_value(out, 0.0, 255.0)

    same = tf.reduce_all(tf.equal(shape, target))
    out = tf.cond(same, lambda: image, resize)
    out.set_shape([spec.height, spec.width, 3])
    return out


def normalize_image(image: tf.Tensor, mode: str) -> tf.Tensor:
    """Maps RGB in [0, 255] to what a backbone expects (see `NORMALIZATIONS`). Works on batches."""
    if mode == "none":
        return image
    if mode == "unit":
        return image / 255.0
    if mode == "symmetric":
        return image / 127.5 - 1.0
    if mode == "caffe":
        return image[..., ::-1] - tf.constant(_CAFFE_MEAN_BGR, image.dtype)
    if mode == "torch":
        return (image / 255.0 - tf.constant(_TORCH_MEAN, image.dtype)) / tf.constant(_TORCH_STD, image.dtype)
    raise ValueError(f"normalization must be one of {sorted(NORMALIZATIONS)}. Received: {mode!r}")


def preprocess_bytes(data: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """Encoded bytes -> resized, normalised float32 image: the whole inference-time path."""
    return normalize_image(resize_image(decode_image(data, spec.pad_value), spec), spec.normalization)


# Datasets ----------------------------------------------------------------------------------
def _load(path: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    return resize_image(decode_image(tf.io.read_file(path), spec.pad_value), spec)


def _normalize(ds: tf.data.Dataset, spec: ImageSpec, parallel) -> tf.data.Dataset:
    if spec.normalization == "none":
        return ds
    return ds.map(lambda item: {**item, "image": normalize_image(item["image"], spec.normalization)},
                  num_parallel_calls=parallel, deterministic=True)


def _labels_array(paths: Sequence[str], labels: Sequence[int] | None) -> np.ndarray:
    if labels is None:
        return np.full(len(paths), -1, dtype=np.int64)
    labels = np.asarray(labels)
    if len(labels) != len(paths):
        raise ValueError(f"Got {len(paths)} paths but {len(labels)} labels.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError("labels must be integer class ids (use Dataset.label_ids()).")
    return labels.astype(np.int64)


def image_dataset(
    paths: Sequence[str],
    labels: Sequence[int] | None = None,
    spec: ImageSpec = ImageSpec(),
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    augment: Augmentation | None = None,
    cache: bool | str = False,
    ignore_errors: bool = True,
    drop_remainder: bool = False,
    repeat: bool = False,
    num_parallel_calls: int | None = None,
) -> tf.data.Dataset:
    """A dataset of `{"image", "label", "index"}` batches over image files, in order or shuffled.

    Args:
        paths: sequence of str. Image files.
        labels: sequence of int or None. Class ids (-1 when None).
        spec: `ImageSpec`. Size, resize mode and normalisation.
        batch_size: int. Batch size.
        shuffle: bool. Reshuffle every epoch (seeded).
        seed: int. Seeds the shuffle and the augmentation.
        augment: `Augmentation` or None. Random augmentation applied after the cache.
        cache: bool or str. Cache decoded, resized images in memory (True) or in a file.
        ignore_errors: bool. Drop images that fail to decode instead of stopping; the `index`
            of each element says which records survived.
        drop_remainder: bool. Drop the last partial batch.
        repeat: bool. Repeat forever (epochs continue the shuffle and augmentation streams).
        num_parallel_calls: int or None. Parallel decoding (default: autotune).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
    if not len(paths):
        raise ValueError("image_dataset() needs at least one path.")
    parallel = num_parallel_calls or tf.data.AUTOTUNE
    labels_array = _labels_array(paths, labels)
    ds = tf.data.Dataset.from_tensor_slices(
        {
            "path": tf.constant([str(p) for p in paths]),
            "label": labels_array,
            "index": np.arange(len(paths), dtype=np.int64),
        }
    )
    ds = ds.map(
        lambda item: {"image": _load(item["path"], spec), "label": item["label"], "index": item["index"]},
        num_parallel_calls=parallel,
        deterministic=True,
    )
    if ignore_errors:
        ds = ds.ignore_errors()
    if cache:
        ds = ds.cache("" if cache is True else str(cache))
    if shuffle:
        ds = ds.shuffle(min(len(paths), 10_000), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if augment is not None:
        # A fresh random stream on every pass: epochs see different augmentations, the same
        # ones for the same seed (in the same order of passes).
        randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, randoms)).map(
            lambda item, r: {**item, "image": augment_batch(item["image"], tf.stack([tf.constant(seed, tf.int64), r]),
                                                            augment)},
            num_parallel_calls=parallel, deterministic=True)
    return _normalize(ds, spec, parallel).prefetch(tf.data.AUTOTUNE)


def load_images(
    paths: Sequence[str], spec: ImageSpec, batch_size: int = 256, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Decodes and resizes every image once into memory.

    Returns:
        uint8 images (n, height, width, 3) (rounded from the resized pixels) and the indices of
        `paths` they come from (undecodable files are left out).
    """
    raw = ImageSpec(spec.height, spec.width, spec.resize, spec.pad_value, "none")
    images, kept = [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc="loading images", unit="img")
    for batch in image_dataset(paths, None, raw, batch_size=batch_size):
        images.append(np.clip(np.rint(batch["image"].numpy()), 0, 255).astype(np.uint8))
        kept.append(batch["index"].numpy())
        if bar is not None:
            bar.update(len(kept[-1]))
    if bar is not None:
        bar.close()
    if not images:
        return np.zeros((0, spec.height, spec.width, 3), np.uint8), np.zeros(0, np.int64)
    return np.concatenate(images), np.concatenate(kept)


def sampled_dataset(
    paths: Sequence[str] | None,
    labels: Sequence[int],
    sampler,
    spec: ImageSpec = ImageSpec(),
    start_epoch: int = 0,
    augment: Augmentation | None = None,
    seed: int = 0,
    ignore_errors: bool = True,
    num_parallel_calls: int | None = None,
    images: np.ndarray | None = None,
    skip_batches: int = 0,
) -> tf.data.Dataset:
    """An endless dataset of `{"image", "label", "index"}` batches whose indices a sampler draws.

    Args:
        paths: the records' image files (None when `images` are given).
        labels: their integer class ids.
        sampler: an object with `epoch(e) -> np.ndarray (batches, batch_size)` of record
            indices and `__len__` (batches per epoch), e.g. `PKSampler`. A sampler with
            `targets(e)` (same shape, e.g. `WordSampler`) gives each batch's `label` itself.
        start_epoch: int. First sampler epoch to draw (to resume a run where it stopped).
        skip_batches: int. Batches of that first epoch already used (a run whose epochs are not
            the sampler's resumes mid-epoch).
        augment: `Augmentation` or None.
        seed: int. Batch b of epoch e is augmented with the seed (seed, e, b), so a resumed run
            sees exactly the images an uninterrupted one would.
        ignore_errors: bool. A batch holding an image that fails to decode is dropped whole,
            so every batch keeps the sampler's exact composition (check files first with
            `visnet.data.validation.check_images`; readers do by default).
        images: uint8 array (n, height, width, 3) or None. Images already in memory (see
            `load_images`), row i for record i: no file is read while training.

    Use with `model.fit(ds, steps_per_epoch=len(sampler))`.
    """
    parallel = num_parallel_calls or tf.data.AUTOTUNE
    labels_array = np.asarray(labels, dtype=np.int64)
    if images is None:
        labels_array = _labels_array(paths, labels)
        paths_t = tf.constant([str(p) for p in paths])
    elif len(images) != len(labels_array) or images.shape[1:] != (spec.height, spec.width, 3):
        raise ValueError(f"images must have shape ({len(labels_array)}, {spec.height}, {spec.width}, 3). "
                         f"Received {images.shape}")
    batch_size = int(sampler.epoch(start_epoch).shape[1])
    image_signature = tf.TensorSpec([spec.height, spec.width, 3], tf.float32)

    if not 0 <= skip_batches < len(sampler):
        raise ValueError(f"skip_batches must be in [0, {len(sampler)}). Received: {skip_batches}")

    targets = getattr(sampler, "targets", None)

    def batches() -> Iterator[tuple]:
        epoch = start_epoch
        while True:
            epoch_targets = None if targets is None else targets(epoch)
            for number, indices in enumerate(sampler.epoch(epoch)):
                if epoch == start_epoch and number < skip_batches:
                    continue
                label = labels_array[indices] if epoch_targets is None else epoch_targets[number]
                if images is None:
                    yield epoch, number, indices, label
                else:
                    yield epoch, number, indices, label, images[indices]
            epoch += 1

    def load_batch(epoch, number, indices, label, pixels=None):
        if pixels is None:
            batch = tf.map_fn(lambda i: _load(tf.gather(paths_t, i), spec), indices,
                              fn_output_signature=image_signature)
        else:
            batch = tf.cast(pixels, tf.float32)
        if augment is not None:
            batch = augment_batch(batch, tf.stack([tf.constant(seed, tf.int64), epoch * 1_000_003 + number]), augment)
        return {"image": batch, "label": label, "index": indices}

    signature = (tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64), tf.TensorSpec([batch_size], tf.int64),
                 tf.TensorSpec([batch_size], tf.int64))
    if images is not None:
        signature += (tf.TensorSpec([batch_size, spec.height, spec.width, 3], tf.uint8),)
    ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
    ds = ds.map(load_batch, num_parallel_calls=parallel, deterministic=True)
    if ignore_errors and images is None:
        ds = ds.ignore_errors()
    return _normalize(ds, spec, parallel).prefetch(tf.data.AUTOTUNE)
