import cv2
import numpy as np
import pytest

from visnet.baselines import HOGEmbedder, PixelEmbedder, embedders


def test_hog_matches_opencv_and_is_normalised():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 128, 96, 3)).astype(np.uint8)
    embed = embedders.get("hog")
    vectors = embed(images)
    assert vectors.shape == (3, 5940) and embed.dim == 5940
    descriptor = cv2.HOGDescriptor((96, 128), (16, 16), (8, 8), (8, 8), 9)
    raw = descriptor.compute(cv2.cvtColor(images[1], cv2.COLOR_RGB2GRAY)).ravel()
    np.testing.assert_allclose(vectors[1], raw / np.linalg.norm(raw), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(embed(images.astype(np.float32)), vectors)  # float input in [0, 255]
    unnormalised = HOGEmbedder(normalize=False)(images)
    np.testing.assert_allclose(unnormalised[1], raw, rtol=1e-5)


def test_hog_geometry_and_input_errors():
    assert HOGEmbedder(image_size=(64, 64), cell=8, block=16, stride=8, bins=6).dim == 7 * 7 * 4 * 6
    with pytest.raises(ValueError, match="Image width 90 does not fit HOG blocks of 16 with stride 8"):
        HOGEmbedder(image_size=(128, 90))
    with pytest.raises(ValueError, match="block must be a multiple of cell"):
        HOGEmbedder(block=12, cell=8)
    with pytest.raises(ValueError, match=r"Expected images of shape \(batch, 128, 96, 3\)"):
        HOGEmbedder()(np.zeros((1, 64, 64, 3)))
    assert HOGEmbedder().get_config()["cell"] == 8


def test_pixel_embedder():
    images = np.zeros((2, 4, 3, 3), np.uint8)
    images[0, :2] = 255
    images[1, :, :1] = 255
    vectors = PixelEmbedder(image_size=(4, 3))(images)
    assert vectors.shape == (2, 36)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(vectors.mean(axis=1), 0.0, atol=1e-6)
    assert PixelEmbedder(image_size=(4, 3), grey=True)(images).shape == (2, 12)
