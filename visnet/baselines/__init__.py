"""Embedders that need no training, resolved by name: `visnet.baselines.embedders.get("hog")`.

An embedder is any callable from a batch of images (batch, height, width, 3), RGB in [0, 255],
to a (batch, dim) array, with an `image_spec` saying which size and normalisation it expects.
Embedders whose `follows_data_size` is true are built at the data's image size by
`visnet.evaluate` (HOG, pretrained); the others keep their own default size (raw pixels at 32x24).

| name         | what                                                                  |
|--------------|-----------------------------------------------------------------------|
| `hog`        | OpenCV HOG of the grey image                                          |
| `pixels`     | the image downsized to 32x24, centred                                 |
| `pretrained` | a backbone (ImageNet, a weights file or a run's trunk) cut N layers below its top |
"""

from visnet.baselines.hog import HOGEmbedder
from visnet.baselines.pixels import PixelEmbedder
from visnet.baselines.pretrained import PretrainedEmbedder
from visnet.registry import Registry

embedders = Registry("embedder")
embedders.register("hog")(HOGEmbedder)
embedders.register("pixels")(PixelEmbedder)
embedders.register("pretrained")(PretrainedEmbedder)

__all__ = ["HOGEmbedder", "PixelEmbedder", "PretrainedEmbedder", "embedders"]
