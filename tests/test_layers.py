import numpy as np
import pytest
from helpers import check_layer

from visnet.layers import CapsuleLength, ClassCapsules, PrimaryCapsules, squash


def test_squash_keeps_direction_and_bounds_length():
    s = np.array([[3.0, 4.0], [0.03, 0.04], [0.0, 0.0]], np.float32)
    v = np.asarray(squash(s))
    lengths = np.linalg.norm(v, axis=1)
    np.testing.assert_allclose(lengths[:2], [25 / 26, 0.0025 / 1.0025], rtol=1e-4)
    np.testing.assert_allclose(v[0] / lengths[0], [0.6, 0.8], rtol=1e-5)
    np.testing.assert_allclose(v[2], 0.0)


def test_primary_capsules(tmp_path):
    layer = PrimaryCapsules(capsules=4, dim=6, kernel_size=3, strides=2)
    check_layer(layer, (8, 6, 5), tmp_path)
    out = np.asarray(layer(np.random.default_rng(0).normal(size=(2, 8, 6, 5)).astype("float32")))
    assert out.shape == (2, 4 * 3 * 4, 6) and np.all(np.linalg.norm(out, axis=-1) < 1)


def test_class_capsules_route_by_agreement(tmp_path):
    check_layer(ClassCapsules(capsules=3, dim=4, routings=3), (10, 6), tmp_path)
    rng = np.random.default_rng(1)
    layer = ClassCapsules(capsules=3, dim=4, routings=1)
    u = rng.normal(size=(2, 10, 6)).astype("float32")
    v = np.asarray(layer(u))
    # One routing iteration: uniform coupling 1/3, v_j = squash(sum_i u_hat_j|i / 3).
    u_hat = np.einsum("bid,ijde->bije", u, np.asarray(layer.kernel))
    np.testing.assert_allclose(v, np.asarray(squash(u_hat.sum(axis=1) / 3)), rtol=1e-4, atol=1e-6)
    # More iterations move the outputs toward the predictions that agree.
    routed = ClassCapsules(capsules=3, dim=4, routings=3)
    routed.build((None, 10, 6))
    routed.kernel.assign(layer.kernel)
    assert not np.allclose(np.asarray(routed(u)), v)


def test_capsule_length(tmp_path):
    check_layer(CapsuleLength(), (5, 3), tmp_path)
    np.testing.assert_allclose(np.asarray(CapsuleLength()(np.array([[[3.0, 4.0]]], np.float32))), [[5.0]], rtol=1e-5)


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="routings must be >= 1"):
        ClassCapsules(routings=0)
    with pytest.raises(ValueError, match=">= 1"):
        PrimaryCapsules(dim=0)
