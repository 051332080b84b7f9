import cv2
import numpy as np
import pytest
from helpers import check_layer

from visnet.baselines.hog import HOGEmbedder
from visnet.layers import HOG
from visnet.layers.hog import block_kernels


def _images(n, height, width, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, height, width, 3)).astype(np.uint8)
    images = np.stack([cv2.GaussianBlur(image, (5, 5), 1.5) for image in images])
    images[0, height // 4: 3 * height // 4, width // 4: width // 2] = (250, 20, 40)  # hard edges
    return images


@pytest.mark.parametrize("size, block, stride, cell, bins", [
    ((128, 96), 16, 8, 8, 9),   # the benchmark's HOG
    ((64, 48), 16, 16, 8, 6),   # non-overlapping blocks, other bins
    ((40, 32), 8, 4, 4, 12),
])
def test_hog_layer_equals_opencv(size, block, stride, cell, bins):
    images = _images(3, *size)
    descriptor = cv2.HOGDescriptor((size[1], size[0]), (block, block), (stride, stride), (cell, cell), bins)
    reference = np.stack([descriptor.compute(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)).reshape(-1)
                          for image in images])
    layer = HOG(block=block, stride=stride, cell=cell, bins=bins, normalize=False)
    out = np.asarray(layer(images.astype("float32")))
    assert out.shape == reference.shape
    np.testing.assert_allclose(out, reference, atol=1e-3)
    # The L2-normalised layer is the HOG baseline embedder; input_scale takes [0, 1] images.
    embedder = HOGEmbedder(image_size=size, block=block, stride=stride, cell=cell, bins=bins)
    scaled = HOG(block=block, stride=stride, cell=cell, bins=bins, input_scale=255.0)
    np.testing.assert_allclose(np.asarray(scaled(images.astype("float32") / 255.0)), embedder(images), atol=1e-4)


def test_block_kernel_weights():
    kernels = block_kernels(16, 8, 9)
    assert kernels.shape == (16, 16, 9, 4)
    # Bilinear cell weights sum to 1 inside the cells' centres; the Gaussian peaks mid-block.
    total = kernels[:, :, 0, :].sum(axis=-1)
    window = np.exp(-((np.arange(16) - 8.0)[:, None] ** 2 + (np.arange(16) - 8.0)[None, :] ** 2) / 32)
    np.testing.assert_allclose(total[4:12, 4:12], window[4:12, 4:12], rtol=1e-5)
    # Pixel (0, 0) votes only into cell (0, 0) (column-major index 0), pixel (15, 0) into cell (1, 0) = 1.
    assert kernels[0, 0, 0, 0] > 0 and np.all(kernels[0, 0, 0, 1:] == 0)
    assert kernels[15, 0, 0, 1] > 0 and kernels[15, 0, 0, 0] == 0 and kernels[15, 0, 0, 2] == 0


def test_hog_layer_serializes(tmp_path):
    check_layer(HOG(block=8, stride=4, cell=4, bins=9, input_scale=255.0), (16, 12, 3), tmp_path)
    layer = HOG()
    layer.build((None, 128, 96, 3))
    assert layer.count_params() == 0 and not layer.trainable


def test_hog_layer_errors_name_the_value():
    with pytest.raises(ValueError, match="block must be a multiple of cell"):
        HOG(block=16, cell=6)
    with pytest.raises(ValueError, match="bins=0"):
        HOG(bins=0)
    with pytest.raises(ValueError, match="input_scale"):
        HOG(input_scale=0)
    with pytest.raises(ValueError, match="height 30 does not fit"):
        HOG()(np.zeros((1, 30, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(batch, height, width, 3\)"):
        HOG()(np.zeros((1, 32, 32, 1), np.float32))
