"""VGG16 and ResNet50 from `keras.applications`, without their classifier."""

from __future__ import annotations

import keras

from visnet.backbones.base import download_error


def _application(constructor, name: str):
    def build(input_shape, weights=None, **options):
        if options:
            raise ValueError(f"The {name} backbone takes no options. Received: {options}")
        try:
            return constructor(include_top=False, weights=weights, input_shape=tuple(input_shape))
        except Exception as error:  # Keras reports a failed download as a bare Exception
            download_failed = isinstance(error, OSError) or "URL fetch failure" in str(error)
            if weights == "imagenet" and download_failed:
                raise download_error(name, error) from error
            raise

    return build


build_vgg16 = _application(keras.applications.VGG16, "vgg16")
build_resnet50 = _application(keras.applications.ResNet50, "resnet50")
