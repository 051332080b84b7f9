"""A run directory and what reads it: the trained embedder for `visnet.embed`, `visnet.evaluate`
and (later) export.

A run directory holds:

    config.json      the TrainConfig (every setting, defaults resolved)
    run.json         image spec, loss, classes, data sizes, versions, untrained validation figures
    best.keras       the model with the best val_mAP (or the last one without validation)
    vocabulary.json  the words of a weak-label (`weakly`) run and the tokenizer that reads them
    last-epochNNNN.keras, state.json    the resume point (epoch count, optimizer state, history)
    history.csv, logs/                  per-epoch logs and TensorBoard events
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from visnet.data.image_spec import ImageSpec
from visnet.training.config import TrainConfig


class RunEmbedder:
    """A trained model as an embedder: normalised image batches in, embeddings out."""

    def __init__(self, model, image_spec: ImageSpec, name: str):
        self.model, self.image_spec, self.name = model, image_spec, name

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(images))

    def get_config(self) -> dict:
        return {"name": self.name, "image_size": [self.image_spec.height, self.image_spec.width]}


class Run:
    """Reads a run directory written by `visnet.train`.

    Args:
        path: str. The run directory.
    """

    def __init__(self, path: str):
        if not os.path.isdir(path):
            raise FileNotFoundError(f"Run directory not found: {path}")
        self.path = path
        config_path, info_path = os.path.join(path, "config.json"), os.path.join(path, "run.json")
        if not os.path.exists(config_path) or not os.path.exists(info_path):
            raise FileNotFoundError(f"{path} is not a visnet run: config.json and run.json are missing.")
        self.config = TrainConfig.load(config_path)
        with open(info_path, encoding="utf-8") as handle:
            self.info = json.load(handle)
        self.image_spec = ImageSpec(**self.info["image_spec"])

    def checkpoint(self, which: str = "best") -> str:
        if which == "best":
            path = os.path.join(self.path, "best.keras")
        elif which == "last":
            from visnet.training.callbacks import load_state

            state = load_state(self.path) or {}
            path = os.path.join(self.path, state.get("last", "missing"))
        else:
            raise ValueError(f"which must be 'best' or 'last'. Received: which={which!r}")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{self.path} has no {which} checkpoint yet (no epoch finished).")
        return path

    def model(self, which: str = "best", hog_weight: float | None = None, image_size=None,
              imagenet=None):
        """The embedding model of checkpoint `which` (`best` or `last`).

        `hog_weight` in (0, 1) adds a HOG pathway after training (`visnet.models.with_hog`):
        the embedding becomes [sqrt(1 - w) * learned, sqrt(w) * HOG].

        `imagenet` (`visnet.models.imagenet_classes.ImageNetClasses`) adds the ImageNet class
        embedding of the offline EfficientNet-Lite0 trunk beside it, with its share of the squared
        distance.

        `image_size` (height, width) rebuilds the model for another input size with the trained
        weights (architectures whose weights do not depend on the input size: a trunk, global
        pooling, dense layers). A convolutional embedding trained on random crops usually ranks
        better a little above its training size ("FixRes", Touvron et al. 2019): measured in the
        README.
        """
        import keras

        import visnet.layers  # noqa: F401  (registers the custom layers)
        import visnet.losses  # noqa: F401
        from visnet.models.common import embedding_model

        # Training heads (normsoftmax proxies, word scores) are dropped: the embedding is the output.
        model = embedding_model(keras.models.load_model(self.checkpoint(which), compile=False))
        if image_size is not None and tuple(image_size) != (self.image_spec.height, self.image_spec.width):
            model = self._resized(model, tuple(int(v) for v in image_size))
        if hog_weight is not None:
            from visnet.models.hybrid import with_hog

            model = with_hog(model, hog_weight, self.image_spec.normalization)
        return _with_classes(model, imagenet, self.image_spec)

    def _resized(self, trained, image_size: tuple[int, int]):
        """`trained` rebuilt at `image_size` with its weights, layer by layer."""
        from visnet.models.common import embedding_model
        from visnet.training.builder import build_model, resolve_loss

        config = dataclasses.replace(self.config, image_size=image_size, weights="none", phases=None)
        model = embedding_model(build_model(config, resolve_loss(config)))
        for layer in model.layers:
            if not layer.weights:
                continue
            try:
                layer.set_weights(trained.get_layer(layer.name).get_weights())
            except ValueError as error:
                raise ValueError(f"The {self.config.arch} run {self.path} cannot run at {image_size[0]}x{image_size[1]}: "
                                 f"the weights of its layer {layer.name!r} depend on the input size ({error}).") from None
        return model

    def vocabulary(self):
        """The vocabulary of a weak-label run (`vocabulary.json`)."""
        from visnet.data.text import Vocabulary

        path = os.path.join(self.path, "vocabulary.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{self.path} has no vocabulary.json: it is not a run of --arch weakly.")
        return Vocabulary.load(path)

    def word_model(self, which: str = "best"):
        """Tagging, word neighbours and text search of a `weakly` run (`visnet.tagging.WordModel`)."""
        from visnet.tagging import WordModel

        return WordModel.from_run(self, which)

    @property
    def arch(self) -> str:
        return self.config.arch

    @property
    def source(self) -> str:
        """Where the run is (its absolute path), as export metadata records it."""
        return os.path.abspath(self.path)

    def embedder(self, which: str = "best", hog_weight: float | None = None, image_size=None,
                 imagenet=None) -> RunEmbedder:
        """The run as an embedder; `image_size` runs it at another input size (see `model`)."""
        name = f"run:{os.path.basename(os.path.normpath(self.path))}" + (f"+hog{hog_weight:g}" if hog_weight else "")
        return _sized_embedder(self.model(which, hog_weight, image_size, imagenet), self.image_spec, name,
                               image_size, imagenet)


class RunEnsemble:
    """Two or more runs as one embedding model (`visnet.models.ensemble_model`): their unit-length
    embeddings side by side, at unit length. Runs of one recipe with different seeds rank better
    together than alone (README, "Two seeds as one model"), at the cost of one forward pass each.

    It reads like a `Run` where evaluation and export need one (`model`, `embedder`, `image_spec`,
    `arch`, `source`). The runs must read images the same way (one image spec) except for the input
    size: runs trained at different sizes run together at the first run's size, or at `image_size`
    (see `Run.model`; every member is rebuilt at it).

    Args:
        paths: two or more run directories.
    """

    arch = "ensemble"

    def __init__(self, paths):
        paths = list(paths)
        if len(paths) < 2:
            raise ValueError(f"An ensemble needs at least 2 runs. Received: {paths}")
        real = [os.path.realpath(p) for p in paths]
        if len(set(real)) < len(real):
            raise ValueError(f"An ensemble lists the same run twice. Received: {paths}")
        self.runs = [Run(p) for p in paths]
        self.image_spec = self.runs[0].image_spec
        size = {"height": self.image_spec.height, "width": self.image_spec.width}
        if len({dataclasses.replace(run.image_spec, **size) for run in self.runs}) > 1:
            listed = "; ".join(f"{run.path}: {run.image_spec.to_dict()}" for run in self.runs)
            raise ValueError("The runs of an ensemble must read images the same way (the input size aside); "
                             f"their image specs differ: {listed}")

    @property
    def source(self) -> list[str]:
        return [run.source for run in self.runs]

    def model(self, which: str = "best", image_size=None, imagenet=None):
        """The members' checkpoint `which`, at `image_size` if given (see `Run.model`), as one model;
        `imagenet` adds the ImageNet class embedding beside the ensemble's (see `Run.model`)."""
        from visnet.models.ensemble import ensemble_model

        size = image_size or (self.image_spec.height, self.image_spec.width)
        model = ensemble_model([run.model(which, None, size) for run in self.runs])
        return _with_classes(model, imagenet, self.image_spec)

    def embedder(self, which: str = "best", hog_weight: float | None = None, image_size=None,
                 imagenet=None) -> RunEmbedder:
        """The runs as one embedder (the arguments of `Run.embedder`; a HOG pathway is for one run)."""
        if hog_weight is not None:
            raise ValueError(f"--hog-weight applies to one run, not to an ensemble of {len(self.runs)}.")
        names = "+".join(os.path.basename(os.path.normpath(run.path)) for run in self.runs)
        return _sized_embedder(self.model(which, image_size, imagenet), self.image_spec, f"ensemble:{names}",
                               image_size, imagenet)


def open_run(paths: str | list[str]) -> Run | RunEnsemble:
    """The `Run` of one directory (a string or a list of one), the `RunEnsemble` of two or more."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    return Run(paths[0]) if len(paths) == 1 else RunEnsemble(paths)


def held_out_ids(paths: str | list[str]) -> frozenset[str]:
    """The ids of the photos that the closed-set run, or the runs read as one model, held out of
    training (`--val images:F`), carved again from the data each run trained on: what the gallery
    smoothing is chosen on. Errors name the run that is not closed-set, held no photos or whole
    classes out, cannot find its training data, or (of several) held out other photos than the first."""
    from visnet.data.readers import parse_spec
    from visnet.training.config import parse_val
    from visnet.training.data import read_training_data

    paths = [paths] if isinstance(paths, str) else list(paths)
    configs = [Run(path).config for path in paths]
    for path, config in zip(paths, configs):  # every cheap check before any data is read
        if config.split != "closed-set":
            raise ValueError(f"Choosing the gallery smoothing needs closed-set runs; {path} was trained with "
                             f"--split {config.split}.")
        mode, _ = parse_val(config.val)
        if mode != "images":
            raise ValueError(f"{path} was trained with --val {config.val}: choosing the gallery smoothing needs photos "
                             "held out of classes the run trained on (--val images:F).")
        try:
            parse_spec(config.data)
        except FileNotFoundError:
            raise ValueError(f"{path} trained on {config.data}, which is not found from here: the photos it held "
                             "out cannot be known.") from None
    held_out = None
    for path, config in zip(paths, configs):
        validation = read_training_data(config, progress=False).val
        ids = frozenset(validation.ids if validation is not None else ())
        if not ids:
            raise ValueError(f"{path} held no photos out of its training: nothing to choose the gallery "
                             "smoothing on.")
        if held_out is not None and ids != held_out:
            raise ValueError(f"{path} held out other photos than {paths[0]}: as one model, the gallery smoothing "
                             "would be chosen on photos a member trained on.")
        held_out = ids
    return held_out


def _with_classes(model, imagenet, spec: ImageSpec):
    """`model` with the ImageNet class embedding beside it (`imagenet`, an `ImageNetClasses`), or as it is."""
    if imagenet is None:
        return model
    from visnet.models.imagenet_classes import with_imagenet_classes

    return with_imagenet_classes(model, imagenet, spec.normalization)


def _sized_embedder(model, spec: ImageSpec, name: str, image_size, imagenet=None) -> RunEmbedder:
    """A RunEmbedder of `model`, whose input is `image_size` when given (else `spec`'s); its name
    ends with the size and, with `imagenet`, the class embedding's label (`+imagenet0.6@288x216`)."""
    if image_size is not None and tuple(image_size) != (spec.height, spec.width):
        spec = dataclasses.replace(spec, height=int(image_size[0]), width=int(image_size[1]))
        name += f"@{spec.height}x{spec.width}"
    if imagenet is not None:
        name += f"+{imagenet.label()}"
    return RunEmbedder(model, spec, name)
