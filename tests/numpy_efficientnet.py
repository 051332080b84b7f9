"""A NumPy forward pass of EfficientNet-Lite0/1/2 straight from a lukemelas-named torch state dict.

Written independently of `visnet.backbones.efficientnet_lite` (its architecture derived here from
B0's table by the Lite scaling rules, its own padding and layouts), so the Keras conversion can
be checked against it.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# (repeats, kernel, stride, expand, out): the EfficientNet-B0 table, which Lite0 keeps.
ARCH = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
        (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
#: (width, depth) multipliers of the Lite variants (the official efficientnet_lite_builder).
SCALING = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}


def arch(variant: str = "lite0") -> list[tuple]:
    """The variant's stages: filters scaled by width and rounded to a multiple of 8 (never below
    90% of the scaled value), repeats by depth rounded up, except the first and last stage's
    (Lite fixes them, with the stem and head)."""
    width, depth = SCALING[variant]

    def filters(f):
        scaled = f * width
        rounded = max(8, int(scaled + 4) // 8 * 8)
        return rounded + 8 if rounded < 0.9 * scaled else rounded

    last = len(ARCH) - 1
    return [(r if i in (0, last) else int(np.ceil(depth * r)), k, s, e, filters(o))
            for i, (r, k, s, e, o) in enumerate(ARCH)]


def _same_pad(x, kernel, stride):
    """TensorFlow 'same' padding of an NHWC batch: the extra pixel goes after."""
    pads = []
    for size in x.shape[1:3]:
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def _windows(x, kernel, stride):
    x = _same_pad(x, kernel, stride)
    w = sliding_window_view(x, (kernel, kernel), axis=(1, 2))  # (n, h', w', c, kh, kw)
    return w[:, ::stride, ::stride]


def conv(x, weight, stride=1):
    """weight: torch (out, in, kh, kw)."""
    k = weight.shape[-1]
    if k == 1 and stride == 1:
        return np.einsum("nhwc,oc->nhwo", x, weight[:, :, 0, 0], optimize=True)
    return np.einsum("nhwcij,ocij->nhwo", _windows(x, k, stride), weight, optimize=True)


def depthwise(x, weight, stride=1):
    """weight: torch (channels, 1, kh, kw)."""
    return np.einsum("nhwcij,cij->nhwc", _windows(x, weight.shape[-1], stride), weight[:, 0], optimize=True)


def batch_norm(x, state, key, eps=1e-3):
    scale = state[f"{key}.weight"] / np.sqrt(state[f"{key}.running_var"] + eps)
    return (x - state[f"{key}.running_mean"]) * scale + state[f"{key}.bias"]


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def forward(state: dict, images: np.ndarray, variant: str = "lite0") -> tuple[np.ndarray, np.ndarray]:
    """(head feature map (n, h/32, w/32, 1280), ImageNet logits (n, 1000)) of RGB images in [0, 255]."""
    x = (images.astype(np.float64) - 127.0) / 128.0
    state = {k: v.astype(np.float64) for k, v in state.items()}
    x = relu6(batch_norm(conv(x, state["_conv_stem.weight"], 2), state, "_bn0"))
    n = 0
    for repeats, kernel, stride, expand, out in arch(variant):
        for r in range(repeats):
            key = f"_blocks.{n}"
            assert state[f"{key}._depthwise_conv.weight"].shape[-1] == kernel, key
            inputs = x
            if expand != 1:
                x = relu6(batch_norm(conv(x, state[f"{key}._expand_conv.weight"]), state, f"{key}._bn0"))
            x = relu6(batch_norm(depthwise(x, state[f"{key}._depthwise_conv.weight"], stride if r == 0 else 1),
                                 state, f"{key}._bn1"))
            x = batch_norm(conv(x, state[f"{key}._project_conv.weight"]), state, f"{key}._bn2")
            if (stride if r == 0 else 1) == 1 and inputs.shape[-1] == out:
                x = x + inputs
            n += 1
    assert f"_blocks.{n}._project_conv.weight" not in state, f"_blocks.{n} and after unused: a wrong table"
    features = relu6(batch_norm(conv(x, state["_conv_head.weight"]), state, "_bn1"))
    logits = features.mean(axis=(1, 2)) @ state["_fc.weight"].T + state["_fc.bias"]
    return features, logits
