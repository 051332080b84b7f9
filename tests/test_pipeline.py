import numpy as np
import pytest
import tensorflow as tf
from helpers import write_image, write_text, write_truncated_jpeg
from PIL import Image

from visnet.data.augment import Augmentation, augment_batch, colour_matrix, transform
from visnet.data.image_spec import ImageSpec, parse_size
from visnet.data.pipeline import (
    decode_image,
    image_dataset,
    normalize_image,
    preprocess_bytes,
    resize_image,
    sampled_dataset,
)
from visnet.data.samplers import PKSampler


def decode(path, background=255.0):
    return decode_image(tf.io.read_file(str(path)), background).numpy()


def test_grey_and_alpha_images_become_rgb(tmp_path):
    grey = decode(write_image(tmp_path / "g.png", mode="L", colour=(90,)))
    assert grey.shape == (24, 16, 3) and np.all(grey == 90)
    # A fully transparent RGBA pixel shows the background; an opaque one its colour.
    pixels = np.zeros((2, 2, 4), np.uint8)
    pixels[0, 0] = (10, 20, 30, 255)
    pixels[1, 1] = (10, 20, 30, 0)
    Image.fromarray(pixels, "RGBA").save(tmp_path / "a.png")
    rgba = decode(tmp_path / "a.png", background=255.0)
    np.testing.assert_allclose(rgba[0, 0], [10, 20, 30])
    np.testing.assert_allclose(rgba[1, 1], [255, 255, 255])
    grey_alpha = np.zeros((2, 2, 2), np.uint8)
    grey_alpha[..., 0], grey_alpha[..., 1] = 100, 128
    Image.fromarray(grey_alpha, "LA").save(tmp_path / "la.png")
    np.testing.assert_allclose(decode(tmp_path / "la.png", 0.0), 100 * 128 / 255, rtol=1e-5)


def test_jpeg_decoding_matches_pil(tmp_path):
    path = write_image(tmp_path / "r.jpg", size=(40, 30), seed=3, fmt="JPEG")
    np.testing.assert_array_equal(decode(path), np.asarray(Image.open(path).convert("RGB")))


def test_pad_crop_and_stretch_keep_or_ignore_the_aspect_ratio():
    wide = tf.fill([10, 40, 3], 50.0)  # 1:4 image into a 20x20 square
    padded = resize_image(wide, ImageSpec(20, 20, resize="pad", pad_value=255)).numpy()
    assert padded.shape == (20, 20, 3)
    np.testing.assert_allclose(padded[8:12], 50.0, rtol=1e-5)  # the 5-pixel-high image sits in the middle
    np.testing.assert_allclose(padded[:7], 255.0)
    np.testing.assert_allclose(padded[-7:], 255.0)
    cropped = resize_image(wide, ImageSpec(20, 20, resize="crop")).numpy()
    np.testing.assert_allclose(cropped, 50.0, rtol=1e-5)  # fills the square: no padding anywhere
    ramp = tf.tile(tf.reshape(tf.range(40, dtype=tf.float32), [1, 40, 1]), [10, 1, 3])
    centre = resize_image(ramp, ImageSpec(10, 10, resize="crop")).numpy()
    assert 14 < centre[5, 0, 0] and centre[5, -1, 0] < 26  # the middle quarter of the ramp
    stretched = resize_image(ramp, ImageSpec(10, 20, resize="stretch")).numpy()
    assert stretched[0, 0, 0] < 2 and stretched[0, -1, 0] > 37
    same = tf.random.uniform([20, 20, 3], 0, 255)
    np.testing.assert_array_equal(resize_image(same, ImageSpec(20, 20)).numpy(), same.numpy())


def test_normalisation_matches_keras_applications():
    from keras.applications import imagenet_utils

    image = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    for mode, keras_mode in (("caffe", "caffe"), ("torch", "torch"), ("symmetric", "tf")):
        expected = imagenet_utils.preprocess_input(image.copy(), mode=keras_mode)
        np.testing.assert_allclose(normalize_image(tf.constant(image), mode).numpy(), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(normalize_image(tf.constant(image), "unit").numpy(), image / 255, rtol=1e-6)
    with pytest.raises(ValueError, match="'imagenet'"):
        normalize_image(tf.constant(image), "imagenet")


def test_spec_and_size_errors_name_the_value():
    assert parse_size("128x96") == (128, 96)
    with pytest.raises(ValueError, match="Received: '128'"):
        parse_size("128")
    with pytest.raises(ValueError, match="resize='squash'"):
        ImageSpec(resize="squash")
    with pytest.raises(ValueError, match="normalization='vgg'"):
        ImageSpec(normalization="vgg")


def test_preprocess_bytes_is_decode_resize_normalise(tmp_path):
    path = write_image(tmp_path / "p.png", size=(30, 60), seed=2)
    spec = ImageSpec(16, 16, normalization="caffe")
    out = preprocess_bytes(tf.io.read_file(path), spec).numpy()
    manual = normalize_image(resize_image(tf.constant(decode(path)), spec), "caffe").numpy()
    np.testing.assert_allclose(out, manual)
    assert out.shape == (16, 16, 3)


def test_image_dataset_skips_bad_files_and_keeps_indices(tmp_path):
    paths = [
        write_image(tmp_path / "0.png", colour=(10, 10, 10)),
        write_truncated_jpeg(tmp_path / "1.jpg"),
        write_image(tmp_path / "2.jpg", colour=(200, 0, 0), fmt="JPEG"),
        write_text(tmp_path / "3.jpg"),
        str(tmp_path / "4-missing.png"),
        write_image(tmp_path / "5.png", mode="RGBA"),
    ]
    ds = image_dataset(paths, [0, 1, 2, 3, 4, 5], ImageSpec(8, 8), batch_size=4)
    batches = list(ds)
    indices = np.concatenate([b["index"].numpy() for b in batches])
    labels = np.concatenate([b["label"].numpy() for b in batches])
    np.testing.assert_array_equal(indices, [0, 2, 5])
    np.testing.assert_array_equal(labels, [0, 2, 5])
    assert batches[0]["image"].shape == (3, 8, 8, 3)


def test_shuffle_cache_and_augmentation_are_seeded(tmp_path):
    paths = [write_image(tmp_path / f"{i}.png", seed=i, size=(12, 12)) for i in range(6)]
    def run(seed):
        ds = image_dataset(paths, list(range(6)), ImageSpec(12, 12), batch_size=6, shuffle=True, seed=seed,
                           augment=Augmentation(), cache=True)
        return [(b["index"].numpy(), b["image"].numpy()) for b in ds.take(1)][0]
    (i1, x1), (i2, x2), (i3, x3) = run(1), run(1), run(2)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(x1, x2)
    assert not np.array_equal(i1, i3) or not np.allclose(x1, x3)
    assert x1.min() >= 0 and x1.max() <= 255


def test_augmentation_changes_pixels_keeps_shape_and_range():
    images = tf.random.stateless_uniform([4, 24, 16, 3], [0, 1], 0, 255)
    a = augment_batch(images, tf.constant([1, 2], tf.int64), Augmentation())
    b = augment_batch(images, tf.constant([1, 2], tf.int64), Augmentation())
    c = augment_batch(images, tf.constant([1, 3], tf.int64), Augmentation())
    assert a.shape == (4, 24, 16, 3)
    np.testing.assert_allclose(a.numpy(), b.numpy())
    assert not np.allclose(a.numpy(), c.numpy())
    assert float(tf.reduce_min(a)) >= 0 and float(tf.reduce_max(a)) <= 255
    off = Augmentation(flip=False, rotation=0, crop=1, brightness=0, contrast=0, saturation=0, hue=0)
    np.testing.assert_allclose(augment_batch(images, tf.constant([1, 2], tf.int64), off).numpy(), images.numpy(),
                               atol=1e-3)
    flip_only = Augmentation(rotation=0, crop=1, brightness=0, contrast=0, saturation=0, hue=0)
    flipped = augment_batch(images, tf.constant([0, 5], tf.int64), flip_only).numpy()
    mirrored = [np.allclose(f, x[:, ::-1], atol=1e-3) for f, x in zip(flipped, images.numpy())]
    unchanged = [np.allclose(f, x, atol=1e-3) for f, x in zip(flipped, images.numpy())]
    assert all(m or u for m, u in zip(mirrored, unchanged)) and any(mirrored)
    with pytest.raises(ValueError, match="crop=0"):
        Augmentation(crop=0)


def _colour_reference(image, brightness, contrast, saturation, hue, grey):
    """Pixel by pixel, one step at a time: contrast about the mean colour, saturation (blend with
    luma), hue (rotate the I, Q chroma of YIQ by `hue` turns), grey, brightness, clip."""
    yiq = np.array([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]])
    angle = 2 * np.pi * hue
    mean = image.reshape(-1, 3).mean(axis=0)
    out = np.empty_like(image, dtype=np.float64)
    for r in range(image.shape[0]):
        for c in range(image.shape[1]):
            p = (image[r, c] - mean) * contrast + mean
            y = p @ np.array([0.299, 0.587, 0.114])
            p = saturation * p + (1 - saturation) * y
            q = yiq @ p
            q = np.array([q[0], np.cos(angle) * q[1] - np.sin(angle) * q[2], np.sin(angle) * q[1] + np.cos(angle) * q[2]])
            p = np.linalg.solve(yiq, q)
            if grey:
                p = np.full(3, p @ np.array([0.299, 0.587, 0.114]))
            out[r, c] = np.clip(p + brightness, 0, 255)
    return out


def test_colour_jitter_matches_a_pixel_by_pixel_reference():
    images = tf.random.stateless_uniform([6, 5, 4, 3], [0, 7], 0, 255)
    config = Augmentation(flip=False, rotation=0, crop=1, brightness=0.2, contrast=0.3, saturation=0.5, hue=0.3,
                          grey=0.5)
    seed = tf.constant([4, 9], tf.int64)
    out = augment_batch(images, seed, config).numpy()
    u = tf.random.stateless_uniform([6, 8], seed).numpy()
    draws = tf.random.stateless_uniform([6, 2], seed + 1).numpy()
    for i, image in enumerate(images.numpy()):
        expected = _colour_reference(image, (2 * u[i, 5] - 1) * 0.2 * 255, 1 + (2 * u[i, 6] - 1) * 0.3,
                                     1 + (2 * draws[i, 0] - 1) * 0.5, (2 * draws[i, 1] - 1) * 0.3, u[i, 7] < 0.5)
        np.testing.assert_allclose(out[i], expected, atol=2e-3)
    assert len({bool(g) for g in u[:, 7] < 0.5}) == 2  # both kinds of image were checked


def test_colour_matrix_keeps_greys_and_luma_and_turns_full_circle():
    ones, zeros, no = tf.ones([3]), tf.zeros([3]), tf.zeros([3], tf.bool)
    hues = tf.constant([0.1, 0.5, 1.0])
    m = colour_matrix(ones, ones, hues, no).numpy()
    grey_pixel, red = np.array([80.0, 80.0, 80.0]), np.array([200.0, 30.0, 10.0])
    luma = np.array([0.299, 0.587, 0.114])
    for matrix in m:
        np.testing.assert_allclose(grey_pixel @ matrix, grey_pixel, atol=1e-3)  # greys stay grey
        np.testing.assert_allclose((red @ matrix) @ luma, red @ luma, atol=1e-3)  # hue keeps brightness
    np.testing.assert_allclose(m[2], np.eye(3), atol=1e-5)  # a whole turn changes nothing
    assert np.abs(red @ m[1] - red).max() > 50  # half a turn does
    np.testing.assert_allclose(colour_matrix(ones, ones, zeros, no).numpy(), np.tile(np.eye(3), (3, 1, 1)), atol=1e-5)
    desaturated = red @ colour_matrix(ones, zeros, zeros, no).numpy()[0]
    np.testing.assert_allclose(desaturated, np.full(3, red @ luma), atol=1e-3)


def test_one_transform_crops_rotates_and_flips():
    image = np.full((1, 21, 21, 3), 255.0, np.float32)
    image[0, 10, 15:] = 0.0  # a dark bar pointing right from the centre
    one, zero, no = tf.ones([1]), tf.zeros([1]), tf.constant([False])
    turned = transform(tf.constant(image), one, tf.constant([np.pi / 2], tf.float32), no, tf.zeros([1, 2])).numpy()[0]
    assert turned[10, 18, 0] > 200  # the bar has left the horizontal...
    assert min(turned[3, 10, 0], turned[17, 10, 0]) < 50  # ...and now points vertically
    mirrored = transform(tf.constant(image), one, zero, tf.constant([True]), tf.zeros([1, 2])).numpy()[0]
    np.testing.assert_allclose(mirrored, image[0, :, ::-1], atol=1e-4)
    ramp = np.tile(np.arange(20, dtype=np.float32)[None, None, :, None], (1, 20, 1, 3))
    # The right half of the image (pixel centres 9.5 to 19), stretched over the whole output.
    cropped = transform(tf.constant(ramp), tf.constant([0.5]), zero, no, tf.constant([[0.0, 9.5]])).numpy()[0]
    np.testing.assert_allclose(cropped[5, :, 0], 9.5 + 0.5 * np.arange(20), atol=1e-4)


def test_sampled_dataset_follows_the_sampler(tmp_path):
    paths = [write_image(tmp_path / f"{i}.png", colour=(i * 20, 0, 0), size=(8, 8)) for i in range(8)]
    labels = [0, 0, 1, 1, 2, 2, 3, 3]
    sampler = PKSampler(labels, p=2, k=2, seed=0)
    ds = sampled_dataset(paths, labels, sampler, ImageSpec(8, 8))
    batches = list(ds.take(len(sampler) + 1))
    expected = np.concatenate([sampler.epoch(0), sampler.epoch(1)[:1]])
    for batch, indices in zip(batches, expected):
        np.testing.assert_array_equal(batch["index"].numpy(), indices)
        np.testing.assert_array_equal(batch["label"].numpy(), np.asarray(labels)[indices])
        np.testing.assert_allclose(batch["image"].numpy()[:, 0, 0, 0], indices * 20.0)
    resumed = next(iter(sampled_dataset(paths, labels, sampler, ImageSpec(8, 8), start_epoch=1)))
    np.testing.assert_array_equal(resumed["index"].numpy(), sampler.epoch(1)[0])


def test_augmentation_differs_between_epochs_but_not_between_runs(tmp_path):
    paths = [write_image(tmp_path / f"{i}.png", seed=i, size=(12, 12)) for i in range(4)]
    ds = image_dataset(paths, None, ImageSpec(12, 12), batch_size=4, augment=Augmentation())
    first, second = [next(iter(ds))["image"].numpy() for _ in range(2)]
    assert not np.allclose(first, second)
    again = image_dataset(paths, None, ImageSpec(12, 12), batch_size=4, augment=Augmentation())
    np.testing.assert_allclose(next(iter(again))["image"].numpy(), first)


def test_a_bad_image_drops_its_whole_sampled_batch_and_nothing_else(tmp_path):
    paths = [write_image(tmp_path / f"{i}.png", colour=(i * 20, 0, 0), size=(8, 8)) for i in range(8)]
    paths[5] = str(tmp_path / "deleted.png")  # vanished after the reader checked it
    labels = [0, 0, 1, 1, 2, 2, 3, 3]
    sampler = PKSampler(labels, p=2, k=2, seed=0)
    expected = [b for b in np.concatenate([sampler.epoch(0), sampler.epoch(1)]) if 5 not in b]
    batches = list(sampled_dataset(paths, labels, sampler, ImageSpec(8, 8)).take(len(expected)))
    for batch, indices in zip(batches, expected):
        np.testing.assert_array_equal(batch["index"].numpy(), indices)
        assert batch["image"].shape == (4, 8, 8, 3)


def test_a_resumed_sampled_run_sees_the_same_augmented_images(tmp_path):
    paths = [write_image(tmp_path / f"{i}.png", seed=i, size=(8, 8)) for i in range(8)]
    labels = [0, 0, 1, 1, 2, 2, 3, 3]
    sampler = PKSampler(labels, p=2, k=2, seed=0)
    whole = list(sampled_dataset(paths, labels, sampler, ImageSpec(8, 8), augment=Augmentation(), seed=3)
                 .take(len(sampler) + 1))
    resumed = next(iter(sampled_dataset(paths, labels, sampler, ImageSpec(8, 8), start_epoch=1,
                                        augment=Augmentation(), seed=3)))
    np.testing.assert_allclose(resumed["image"].numpy(), whole[len(sampler)]["image"].numpy())
    assert not np.allclose(whole[0]["image"].numpy(), whole[len(sampler)]["image"].numpy())


def test_phone_jpegs_decode(tmp_path):
    frames = [Image.new("RGB", (16, 12), colour) for colour in ("red", "blue")]
    path = str(tmp_path / "phone.jpg")
    frames[0].save(path, format="MPO", save_all=True, append_images=frames[1:])
    image = decode(path)
    assert image.shape == (12, 16, 3) and image[..., 0].mean() > 200 and image[..., 2].mean() < 50


def test_in_memory_images_give_the_same_batches_as_files(tmp_path):
    from visnet.data.pipeline import load_images

    paths = [write_image(tmp_path / f"{i}.png", seed=i, size=(8, 8)) for i in range(8)]
    paths[3] = write_text(tmp_path / "3.png")
    images, kept = load_images(paths, ImageSpec(8, 8))
    np.testing.assert_array_equal(kept, [0, 1, 2, 4, 5, 6, 7])
    labels = [0, 0, 1, 2, 2, 3, 3]  # the 7 kept images
    good = [paths[i] for i in kept]
    sampler = PKSampler(labels, p=2, k=2, seed=0)
    spec = ImageSpec(8, 8, normalization="unit")
    from_files = list(sampled_dataset(good, labels, sampler, spec, augment=Augmentation(), seed=1).take(3))
    from_memory = list(sampled_dataset(None, labels, sampler, spec, augment=Augmentation(), seed=1, images=images)
                       .take(3))
    for a, b in zip(from_files, from_memory):
        np.testing.assert_array_equal(a["index"].numpy(), b["index"].numpy())
        np.testing.assert_allclose(a["image"].numpy(), b["image"].numpy(), atol=1e-5)  # PNG pixels are integers


def test_grey_augmentation_turns_some_images_grey():
    images = tf.random.stateless_uniform([16, 8, 8, 3], [0, 1], 0, 255)
    only_grey = Augmentation(flip=False, rotation=0, crop=1, brightness=0, contrast=0, saturation=0, hue=0, grey=0.5)
    out = augment_batch(images, tf.constant([2, 3], tf.int64), only_grey).numpy()
    grey = [np.allclose(o[..., 0], o[..., 1], atol=1e-3) and np.allclose(o[..., 1], o[..., 2], atol=1e-3) for o in out]
    assert 0 < sum(grey) < 16
    for o, x, g in zip(out, images.numpy(), grey):
        if g:
            np.testing.assert_allclose(o[..., 0], x @ np.array([0.299, 0.587, 0.114]), rtol=1e-4, atol=1e-2)
        else:
            np.testing.assert_allclose(o, x, atol=1e-3)
    with pytest.raises(ValueError, match="grey=2"):
        Augmentation(grey=2)


def test_a_stream_resumes_mid_epoch(tmp_path):
    paths = [write_image(tmp_path / f"{i}.png", seed=i, size=(8, 8)) for i in range(8)]
    labels = [0, 0, 1, 1, 2, 2, 3, 3]
    sampler = PKSampler(labels, p=2, k=2, batches_per_epoch=3, seed=0)
    whole = [b["index"].numpy() for b in sampled_dataset(paths, labels, sampler, ImageSpec(8, 8)).take(5)]
    # 4 batches done (one run epoch of 4 steps): sampler epoch 1, its batch 1.
    resumed = next(iter(sampled_dataset(paths, labels, sampler, ImageSpec(8, 8), start_epoch=1, skip_batches=1)))
    np.testing.assert_array_equal(resumed["index"].numpy(), whole[4])
    with pytest.raises(ValueError, match="skip_batches must be in"):
        sampled_dataset(paths, labels, sampler, ImageSpec(8, 8), skip_batches=3)


PLAIN = dict(flip=False, rotation=0, crop=1, brightness=0, contrast=0, saturation=0, hue=0)


def test_photo_augmentations_background_occlusion_light_and_tilt():
    from visnet.data.augment import Augmentation

    # A studio shot: white background, a dark product in the middle.
    image = np.full((4, 32, 24, 3), 255.0, np.float32)
    image[:, 10:22, 8:16] = 40.0
    seed = tf.constant([3, 4], tf.int64)
    scene = augment_batch(tf.constant(image), seed, Augmentation(**PLAIN, background=1.0)).numpy()
    assert np.abs(scene[:, :4] - 255).mean() > 20  # the background is a scene now
    np.testing.assert_allclose(scene[:, 10:22, 8:16], 40.0)  # the product is untouched
    assert len({tuple(s[0, 0].round()) for s in scene}) == 4  # a different scene per image

    occluded = augment_batch(tf.constant(image), seed, Augmentation(**PLAIN, occlusion=1.0)).numpy()
    changed = np.any(occluded != image, axis=-1)
    for mask in changed:  # one solid rectangle, 15-40% of each side
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        assert mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all() or mask.sum() == 0
        assert rows.size <= 0.8 * 32 + 1

    grey = np.full((2, 16, 16, 3), 128.0, np.float32)
    lit = augment_batch(tf.constant(grey), seed, Augmentation(**PLAIN, lighting=0.4)).numpy()
    assert lit.min() >= 0 and lit.max() <= 255 and np.ptp(lit[..., 1]) > 5  # a ramp across the image
    assert augment_batch(tf.constant(grey), seed, Augmentation(**PLAIN)).numpy().std() < 1e-3

    tilted = augment_batch(tf.constant(image), seed, Augmentation(**PLAIN, perspective=0.3)).numpy()
    assert not np.allclose(tilted, image, atol=1)
    np.testing.assert_allclose(tilted[:, 16, 12], image[:, 16, 12], atol=1)  # the centre stays put
    again = augment_batch(tf.constant(image), seed, Augmentation.photo()).numpy()
    np.testing.assert_allclose(again, augment_batch(tf.constant(image), seed, Augmentation.photo()).numpy())
    for bad, match in [({"background": 1.5}, "background=1.5"), ({"perspective": 0.6}, "perspective=0.6"),
                       ({"lighting": 1.0}, "lighting=1.0"), ({"occlusion": -0.1}, "occlusion=-0.1")]:
        with pytest.raises(ValueError, match=match):
            Augmentation(**bad)
