"""A word probe: tags for photos of classes it never saw, learned from product names on a frozen trunk.

    python -m visnet.word_probe --data ../shared/data/fashion-products --split open-set --out probes/lite0
    python -m visnet.tag --probe probes/lite0 photo1.jpg photo2.jpg

The weak-label model (`--arch weakly`) ranks words by how close they sit to a photo's embedding,
which on new kinds of product picks the words of the kinds it knows (`socks`, `sunglasses`) and
loses to always saying the most common word. The probe asks a narrower question, whether each
word is in the photo's name, and answers it so that it holds on classes it has not seen:

1. Features: the outputs of the trunk's last `blocks` blocks, each averaged over space and put
   side by side (early blocks keep colour, late ones the kind of product), standardised.
2. A probe: one sigmoid per vocabulary word on those features (binary cross-entropy, L2).
3. Calibration for unseen classes: the training classes are split into `folds` groups; a probe
   fitted without a group scores that group's photos, so every photo is scored by a probe that
   never saw its class. On those scores, each photo's `candidates` best words are refitted by a
   logistic regression on (the probe's log-odds, one bias per word): words that only name a
   class seen in training (`socks`) lose their bias, words that hold across classes (`men`,
   `black`) keep theirs. The slope and biases are folded into the final probe (fitted on every
   training photo), so the saved model outputs calibrated log-odds directly.

Text search (`text_scores`) ranks photos by the log-probability that their name holds every
query word. Words of a new kind of product are often in no training name (`jeans` when the
catalogue had none); when the trunk comes with an ImageNet classifier, a query word that names
ImageNet classes (`visnet.data.imagenet`) adds `imagenet_weight` x the log-probability of those
classes, with the weight chosen the same way as the calibration: on classes each probe did not see.

The saved directory holds `probe.keras` (normalised images -> {"words": calibrated log-odds of
each word, "imagenet": ImageNet log-probabilities when the trunk has a classifier}, the trunk
included), `vocabulary.json` and `probe.json` (image spec, settings, the out-of-class checks).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np

from visnet.cli import report_error, size

PROBE_FILE, VOCABULARY_FILE, INFO_FILE = "probe.keras", "vocabulary.json", "probe.json"
#: The weights of the ImageNet classes in text search that a fit chooses from (0: none).
IMAGENET_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
#: The lowest log-probability text search uses (an image's ImageNet log-probabilities may hold -inf).
LOG_PROBABILITY_FLOOR = -1e4


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
    """How a word probe is fitted.

    Args:
        backbone: str. A registered backbone.
        weights: `"imagenet"`, a weights file, or `"none"`.
        image_size: (height, width) the photos are resized to.
        blocks: int. How many of the trunk's last blocks give features (fewer if it has fewer).
        folds: int. Groups of training classes for the out-of-class calibration (>= 2).
        l2: float. L2 weight of the probe's kernel.
        epochs: int. Passes over the features when fitting a probe.
        learning_rate: float. Adam's learning rate when fitting a probe.
        candidates: int. Best words per photo the calibration is fitted on.
        calibration_c: float. Inverse L2 strength of the calibration's logistic regression.
        text_languages: stop-word lists of the tokenizer.
        min_word_count: int. Words found in fewer training names are left out (as `weakly` does).
        imagenet_weight: float, or None (or "auto"). Weight of the trunk's ImageNet classes in text
            search (see `ImageNetNames`); None chooses it from `IMAGENET_WEIGHTS` on classes the
            probe did not see. Only trunks with an ImageNet classifier (efficientnet-lite0/1/2, imagenet) have them.
        imagenet_compounds: bool. A word also names ImageNet classes it ends (`bag` -> `mailbag`).
        seed: int.
    """

    backbone: str = "efficientnet-lite0"
    weights: str = "imagenet"
    image_size: tuple[int, int] = (224, 168)
    blocks: int = 7
    folds: int = 4
    l2: float = 1e-4
    epochs: int = 30
    learning_rate: float = 1e-3
    candidates: int = 20
    calibration_c: float = 1.0
    text_languages: tuple[str, ...] = ("en", "fr")
    min_word_count: int = 2
    imagenet_weight: float | None = None
    imagenet_compounds: bool = False
    seed: int = 0

    def __post_init__(self):
        for name in ("blocks", "epochs", "candidates", "min_word_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1. Received: {name}={getattr(self, name)}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0. Received: seed={self.seed}")
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2 (a probe is fitted without each group of classes). "
                             f"Received: folds={self.folds}")
        if self.imagenet_weight == "auto":
            object.__setattr__(self, "imagenet_weight", None)
        weight = self.imagenet_weight
        if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float))
                                   or not math.isfinite(weight) or weight < 0):
            raise ValueError("imagenet_weight must be a finite number >= 0, or None or 'auto' (chosen on held-out "
                             f"classes). Received: imagenet_weight={weight!r}")
        if not isinstance(self.imagenet_compounds, bool):
            raise ValueError(f"imagenet_compounds must be true or false. Received: imagenet_compounds="
                             f"{self.imagenet_compounds!r}")
        if self.l2 < 0 or self.calibration_c <= 0 or self.learning_rate <= 0:
            raise ValueError(f"l2 must be >= 0, learning_rate and calibration_c > 0. Received: l2={self.l2}, "
                             f"learning_rate={self.learning_rate}, calibration_c={self.calibration_c}")


def block_outputs(trunk, blocks: list[str], count: int) -> list[str]:
    """Names of the layers that end the last `count` of `blocks` (layer-name prefixes) in `trunk`."""
    names = [layer.name for layer in trunk.layers]
    ends = []
    for prefix in blocks[-count:]:
        found = [n for n in names if n.startswith(prefix) and len(trunk.get_layer(n).output.shape) == 4]
        if found:
            ends.append(found[-1])
    if not ends:
        raise ValueError(f"None of the blocks {list(blocks[-count:])} of {trunk.name} gives a feature map.")
    return ends


def feature_model(settings: ProbeSettings):
    """(keras model, its ImageSpec): normalised images -> [pooled block features side by side], and
    a second output, the log-probabilities of the ImageNet classes, when the trunk has a classifier
    (`visnet.backbones.imagenet_classifier`)."""
    import keras

    from visnet.backbones import backbone_info, imagenet_classifier
    from visnet.baselines.pretrained import load_trunk

    keras.utils.set_random_seed(settings.seed)  # weights not loaded from a file are drawn the same way each time
    trunk, spec, backbone = load_trunk(settings.backbone, settings.weights, settings.image_size, {})
    trunk.trainable = False
    ends = block_outputs(trunk, list(backbone_info(backbone).blocks), settings.blocks)
    pooled = [keras.layers.GlobalAveragePooling2D(name=f"pool_{n}")(trunk.get_layer(n).output) for n in ends]
    features = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="block_features")(pooled)
    outputs = [features]
    classifier = imagenet_classifier(backbone, settings.weights)
    if classifier is not None:
        from visnet.models.imagenet_classes import imagenet_log_probabilities

        outputs.append(imagenet_log_probabilities(trunk.output, classifier))
    return keras.Model(trunk.inputs, outputs, name="probe_features"), spec


def embed_features(features_model, records, spec, progress: bool = True):
    """(records kept, block features, ImageNet log-probabilities or None) of `records`."""
    from visnet.evaluation.embedding import embed_parts

    def outputs(images):
        out = features_model.predict_on_batch(images)
        return out if isinstance(out, (list, tuple)) else [out]

    kept, parts = embed_parts(outputs, records, spec, progress, description="probe features")
    return kept, parts[0], (parts[1] if len(parts) > 1 else None)


def bag_targets(bags, vocabulary_size: int) -> np.ndarray:
    """(n, K) 0/1 matrix: word j is in text i."""
    targets = np.zeros((len(bags), vocabulary_size), np.float32)
    for i, bag in enumerate(bags):
        targets[i, bag] = 1.0
    return targets


def fit_probe(features: np.ndarray, targets: np.ndarray, l2: float = 1e-4, epochs: int = 30, seed: int = 0,
              learning_rate: float = 1e-3):
    """One sigmoid per word on standardised features. Returns (mean, std, kernel, bias): the
    probe's log-odds are ((x - mean) / std) @ kernel + bias."""
    import keras

    mean = features.mean(axis=0)
    # A floor keeps a feature that barely varies on these photos from exploding on others.
    std = features.std(axis=0)
    std = np.maximum(std, 0.01 * float(np.median(std)) + 1e-6)
    keras.utils.set_random_seed(seed)
    dense = keras.layers.Dense(targets.shape[1], kernel_regularizer=keras.regularizers.l2(l2) if l2 else None)
    model = keras.Sequential([keras.Input((features.shape[1],)), dense])
    model.compile(keras.optimizers.Adam(learning_rate), keras.losses.BinaryCrossentropy(from_logits=True))
    model.fit((features - mean) / std, targets, batch_size=256, epochs=epochs, verbose=0)
    kernel, bias = (np.asarray(w) for w in dense.get_weights())
    return mean, std, kernel, bias


def probe_logits(features: np.ndarray, probe) -> np.ndarray:
    mean, std, kernel, bias = probe
    return ((features - mean) / std) @ kernel + bias


def class_folds(labels: np.ndarray, folds: int, seed: int = 0) -> list[np.ndarray]:
    """The training classes shuffled (seeded) into `folds` groups; an error if there are fewer classes."""
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError(f"The out-of-class calibration needs photos of 2 classes or more; these have {len(classes)}.")
    if len(classes) < folds:
        raise ValueError(f"The out-of-class calibration splits the classes into {folds} groups, but the training "
                         f"photos have {len(classes)} classes: use --folds {max(2, len(classes))} or fewer, "
                         "or more classes.")
    np.random.default_rng([seed, 23]).shuffle(classes)
    return np.array_split(classes, folds)


def out_of_class_logits(features, targets, labels, settings: ProbeSettings, progress=None) -> np.ndarray:
    """Every photo's log-odds from a probe fitted without its class's group."""
    logits = np.zeros(targets.shape, np.float32)
    for i, group in enumerate(class_folds(np.asarray(labels), settings.folds, settings.seed)):
        held = np.isin(labels, group)
        probe = fit_probe(features[~held], targets[~held], settings.l2, settings.epochs, settings.seed,
                          settings.learning_rate)
        logits[held] = probe_logits(features[held], probe)
        if progress:
            progress(i + 1)
    return logits


def _candidates(logits: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    count = min(count, logits.shape[1])
    top = np.argpartition(-logits, count - 1, axis=1)[:, :count]
    return np.repeat(np.arange(len(logits)), count), top.ravel()


def fit_calibration(logits: np.ndarray, targets: np.ndarray, candidates: int = 20, c: float = 1.0):
    """(slope, per-word bias) such that sigmoid(slope * logit + bias[word]) fits whether the word is
    in the name, on each photo's `candidates` best words. Words never among them keep bias 0 plus
    the intercept. If the logits rank the words the wrong way (a fitted slope <= 0: nothing the
    probe learned carries over between classes), the slope is 0 and the biases alone are fitted."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    rows, cols = _candidates(logits, candidates)
    y = targets[rows, cols]
    if y.min() == y.max():
        raise ValueError("The calibration needs candidate words both in and out of the names; every candidate "
                         f"was {'in' if y.max() else 'out of'} them (too few photos or words).")
    n, k = len(rows), logits.shape[1]
    design = sparse.hstack([sparse.csr_matrix(logits[rows, cols][:, None].astype(np.float64)),
                            sparse.csr_matrix((np.ones(n), (np.arange(n), cols)), shape=(n, k))]).tocsr()
    fit = LogisticRegression(C=c, max_iter=2000).fit(design, y)
    slope = float(fit.coef_[0, 0])
    if slope > 0:
        return slope, (fit.coef_[0, 1:] + fit.intercept_[0]).astype(np.float32)
    # The scores rank the words the wrong way on classes the probe did not see: drop them, and
    # keep what the words' out-of-class rates say (the same tags for every photo).
    fit = LogisticRegression(C=c, max_iter=2000).fit(design[:, 1:], y)
    return 0.0, (fit.coef_[0] + fit.intercept_[0]).astype(np.float32)


def calibrate(logits: np.ndarray, slope: float, bias: np.ndarray) -> np.ndarray:
    return slope * logits + bias[None, :]


def precision_at_1(logits: np.ndarray, bags) -> float:
    from visnet.evaluation.text import tag_precision

    return tag_precision(logits, bags, ks=(1,))[1]


def calibrated_model(features_model, probe, slope: float, bias: np.ndarray):
    """images -> features -> standardise -> probe -> calibration, the last three as a Normalization
    and one Dense layer: slope * probe_logits + bias. Outputs {"words": log-odds} and, when the
    features model has them, {"imagenet": ImageNet log-probabilities}."""
    import keras

    mean, std, kernel, probe_bias = probe
    features, *rest = features_model.outputs
    x = keras.layers.Normalization(mean=mean, variance=std**2, name="standardize")(features)
    dense = keras.layers.Dense(kernel.shape[1], name="word_logits")
    outputs = {"words": dense(x)}
    dense.set_weights([slope * kernel, slope * probe_bias + bias])
    if rest:
        outputs["imagenet"] = rest[0]
    return keras.Model(features_model.inputs, outputs, name="word_probe")


def _log_probabilities(logits: np.ndarray) -> np.ndarray:
    """log sigmoid(logits), computed stably."""
    return -np.logaddexp(0.0, -np.asarray(logits, np.float64))


def text_score_matrix(texts, word_logits: np.ndarray, vocabulary, imagenet: np.ndarray | None = None,
                      names=None, weight: float = 0.0) -> np.ndarray:
    """(queries, images) text -> image scores: each image's log-probability that its name holds
    every vocabulary word of the query, plus `weight` x the log-probability (from `imagenet`, the
    images' ImageNet log-probabilities) of the ImageNet classes each query word names (`names`,
    an `ImageNetNames`), each distinct set of classes counted once per query."""
    bags = [vocabulary.bag(t) for t in texts]
    incidence = np.zeros((len(texts), word_logits.shape[1]))
    for i, bag in enumerate(bags):
        incidence[i, bag] = 1.0
    scores = incidence @ _log_probabilities(word_logits).T
    if imagenet is None or names is None or not weight:
        return scores
    matched = [names.query_classes(vocabulary.tokenizer(t)) for t in texts]
    columns: dict[tuple[int, ...], int] = {}
    for query in matched:
        for classes in query.values():
            columns.setdefault(classes, len(columns))
    if not columns:
        return scores
    imagenet = np.asarray(imagenet, np.float64)
    class_scores = np.stack([np.logaddexp.reduce(imagenet[:, list(c)], axis=1) for c in columns], axis=1)
    class_scores = np.maximum(class_scores, LOG_PROBABILITY_FLOOR)  # a -inf would turn 0 x -inf into NaN
    uses = np.zeros((len(texts), len(columns)))
    for i, query in enumerate(matched):
        for classes in query.values():
            uses[i, columns[classes]] = 1.0  # once per query, as words are: `jean jeans` is one class set
    return scores + weight * (uses @ class_scores.T)


def choose_imagenet_weight(word_logits, imagenet, texts, labels, vocabulary, names, folds: int, seed: int = 0,
                           grid=IMAGENET_WEIGHTS) -> tuple[float, dict[str, float]]:
    """The weight of the ImageNet classes in text search that ranks best on classes the probe did
    not see: within each group of `class_folds`, half the photos' names (those with a vocabulary
    word, so that every weight, 0 included, ranks by something) rank the other half, scored with
    `word_logits` from a probe fitted without the group; a hit is a top-1 photo of the same label.
    Returns (weight, {weight: Recall@1}); ties go to the smaller weight, and with no name to rank
    by, (0, {})."""
    from visnet.evaluation.text import text_recall

    labels, texts = np.asarray(labels), list(texts)
    hits = {float(w): 0.0 for w in grid}
    total = 0
    for group in class_folds(labels, folds, seed):
        members = np.flatnonzero(np.isin(labels, group))
        np.random.default_rng([seed, 29]).shuffle(members)
        queries, gallery = members[: len(members) // 2], members[len(members) // 2:]
        queries = np.array([i for i in queries if vocabulary.bag(texts[i]).size], dtype=np.int64)
        if not len(queries) or not len(gallery):
            continue
        for w in hits:
            scores = text_score_matrix([texts[i] for i in queries], word_logits[gallery], vocabulary,
                                       imagenet[gallery], names, w)
            hits[w] += len(queries) * text_recall(scores, labels[queries], labels[gallery], ks=(1,))[1]
        total += len(queries)
    if not total:  # nothing to choose on: text search keeps to the probe's words
        return 0.0, {}
    recall = {f"{w:g}": h / total for w, h in hits.items()}
    best = max(hits, key=lambda w: (round(hits[w] / total, 9), -w))
    return best, recall


class WordProbe:
    """A fitted word probe: `model` maps normalised images to calibrated log-odds of each word
    (and, on a trunk with an ImageNet classifier, to the log-probabilities of its classes).

    Example:

        probe = WordProbe.load("probes/lite0")
        scores = probe.scores(images)     # normalised as probe.image_spec says
        probe.tag(scores["words"], k=5)   # [[("men", 0.71), ("black", 0.55), ...], ...]
        probe.text_scores("black jeans", scores["words"], scores.get("imagenet"))
    """

    def __init__(self, model, vocabulary, image_spec, info: dict):
        self.model, self.vocabulary, self.image_spec, self.info = model, vocabulary, image_spec, info

    @classmethod
    def fit(cls, records, settings: ProbeSettings = ProbeSettings(), progress: bool = True) -> WordProbe:
        """Fits on `records` (a `Dataset` whose records carry text and labels)."""

        from visnet.data.text import NON_VISUAL_WORDS, TextTokenizer, Vocabulary
        from visnet.evaluation.text import frequency_scores

        if not any(r.text for r in records):
            raise ValueError(f"A word probe learns from text, but no record of {records.name} has any "
                             "(kaggle and benchmark layouts read productDisplayName; manifests a text column).")
        named = records.filter(lambda r: bool(r.text), "with names")
        texts = [r.text for r in named]
        tokenizer = TextTokenizer(languages=tuple(settings.text_languages), drop_words=tuple(NON_VISUAL_WORDS))
        vocabulary = Vocabulary.build(map(tokenizer, texts), min_count=settings.min_word_count, tokenizer=tokenizer)
        start = time.perf_counter()
        features_model, spec = feature_model(settings)
        kept, features, imagenet = embed_features(features_model, named, spec, progress)
        embed_seconds = time.perf_counter() - start
        bags = vocabulary.bags(r.text for r in kept)
        targets = bag_targets(bags, len(vocabulary))
        labels = np.asarray(kept.labels)
        from tqdm import tqdm

        with tqdm(total=settings.folds, desc="out-of-class probes", unit="fold", disable=not progress) as bar:
            held_out = out_of_class_logits(features, targets, labels, settings, progress=lambda _: bar.update(1))
        slope, bias = fit_calibration(held_out, targets, settings.candidates, settings.calibration_c)
        imagenet_info = None
        if imagenet is not None:
            from visnet.data.imagenet import ImageNetNames

            names = ImageNetNames.load(compounds=settings.imagenet_compounds)
            chosen, recall = choose_imagenet_weight(calibrate(held_out, slope, bias), imagenet,
                                                    [r.text for r in kept], labels, vocabulary, names,
                                                    settings.folds, settings.seed)
            weight = chosen if settings.imagenet_weight is None else float(settings.imagenet_weight)
            imagenet_info = {"classes": int(imagenet.shape[1]), "weight": weight,
                             "chosen": settings.imagenet_weight is None, "compounds": settings.imagenet_compounds,
                             "out_of_class_text_recall_at_1": recall}
        mean, std, kernel, probe_bias = fit_probe(features, targets, settings.l2, settings.epochs, settings.seed,
                                                  settings.learning_rate)

        model = calibrated_model(features_model, (mean, std, kernel, probe_bias), slope, bias)
        frequency = frequency_scores(vocabulary.counts, len(bags))
        info = {
            "settings": dataclasses.asdict(settings), "feature_layers": [layer.name for layer in features_model.layers
                                                                          if layer.name.startswith("pool_")],
            "photos": len(kept), "classes": int(len(np.unique(labels))), "vocabulary_size": len(vocabulary),
            "skipped": len(named) - len(kept), "without_names": len(records) - len(named),
            "calibration": {"slope": slope, "word_bias": [round(float(b), 6) for b in bias]},
            "imagenet": imagenet_info,
            "out_of_class_precision_at_1": {"probe": precision_at_1(held_out, bags),
                                            "calibrated": precision_at_1(calibrate(held_out, slope, bias), bags),
                                            "frequency_baseline": precision_at_1(frequency, bags)},
            "feature_seconds": round(embed_seconds, 1), "fit_seconds": round(time.perf_counter() - start - embed_seconds, 1),
        }
        return cls(model, vocabulary, spec, info)

    def save(self, path: str) -> None:
        from visnet.files import replacing, write_file

        os.makedirs(path, exist_ok=True)
        with replacing(os.path.join(path, PROBE_FILE), ".keras") as temporary:
            self.model.save(temporary)
        self.vocabulary.save(os.path.join(path, VOCABULARY_FILE))
        info = dict(self.info, image_spec=dataclasses.asdict(self.image_spec))
        write_file(os.path.join(path, INFO_FILE), json.dumps(info, indent=2).encode())

    @classmethod
    def load(cls, path: str) -> WordProbe:
        import keras

        from visnet.data.image_spec import ImageSpec
        from visnet.data.text import Vocabulary

        if not os.path.isfile(os.path.join(path, INFO_FILE)):
            raise ValueError(f"{path} is not a word probe directory (no {INFO_FILE}; make one with "
                             "python -m visnet.word_probe).")
        with open(os.path.join(path, INFO_FILE), encoding="utf-8") as handle:
            info = json.load(handle)
        model = keras.models.load_model(os.path.join(path, PROBE_FILE), compile=False)
        return cls(model, Vocabulary.load(os.path.join(path, VOCABULARY_FILE)), ImageSpec(**info["image_spec"]), info)

    def scores(self, images: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
        """{"words": (n, K) calibrated log-odds that each word is in each image's name, and, when the
        probe's trunk has an ImageNet classifier, "imagenet": (n, 1000) log-probabilities of its
        classes} of normalised images (as `image_spec`)."""
        out = self.model.predict(np.asarray(images, np.float32), batch_size=batch_size, verbose=0)
        if not isinstance(out, dict):  # a probe saved before the ImageNet output
            out = {"words": out}
        return {name: np.asarray(value) for name, value in out.items()}

    def logits(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(n, K) calibrated log-odds that each word is in the name of each image (normalised, as `image_spec`)."""
        return self.scores(images, batch_size)["words"]

    @property
    def imagenet_names(self):
        """The `ImageNetNames` text search matches query words to, or None (no ImageNet classes, or weight 0)."""
        settings = self.info.get("imagenet")
        if not settings or not settings["weight"]:
            return None
        if not hasattr(self, "_names"):
            from visnet.data.imagenet import ImageNetNames

            self._names = ImageNetNames.load(compounds=settings["compounds"])
        return self._names

    def tag(self, logits: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        """The k most likely words of each image (from its `logits()`) with the probability that its
        name holds them, best first."""
        if k < 1:
            raise ValueError(f"k must be >= 1. Received: k={k}")
        logits = np.asarray(logits)
        top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        return [[(self.vocabulary.words[j], float(1.0 / (1.0 + np.exp(-row[j])))) for j in ids]
                for row, ids in zip(logits, top)]

    def uncalibrated(self, logits: np.ndarray) -> np.ndarray:
        """The final probe's log-odds before the out-of-class calibration was folded in."""
        calibration = self.info["calibration"]
        if calibration["slope"] <= 0:
            raise ValueError("This probe's calibration dropped its scores (slope 0): they did not carry over "
                             "between classes, so the uncalibrated log-odds cannot be recovered.")
        return (np.asarray(logits) - np.asarray(calibration["word_bias"])[None, :]) / calibration["slope"]

    def query_ids(self, text: str) -> np.ndarray:
        """The vocabulary ids of a text query's words; a query with none is an error naming it."""
        return self.vocabulary.query_ids(text)

    def check_query(self, text: str, imagenet: bool = True) -> None:
        """An error naming the query when none of its words is in the vocabulary or (with `imagenet`,
        for a probe that has ImageNet classes) names an ImageNet class."""
        names = self.imagenet_names if imagenet else None
        if names is None or not names.query_classes(self.vocabulary.tokenizer(text)):
            self.query_ids(text)

    def text_scores(self, text: str, logits: np.ndarray, imagenet: np.ndarray | None = None) -> np.ndarray:
        """Text -> image: each image's log-probability that its name holds every word of the query
        (from `logits`, the images' `logits()`), plus, given `imagenet` (the images' ImageNet
        log-probabilities, `scores()["imagenet"]`), the probe's weight x the log-probability of the
        ImageNet classes each query word names. Higher ranks first."""
        self.check_query(text, imagenet is not None)
        names = self.imagenet_names if imagenet is not None else None
        weight = self.info["imagenet"]["weight"] if names is not None else 0.0
        return text_score_matrix([text], np.asarray(logits), self.vocabulary, imagenet, names, weight)[0]


def _weight(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number >= 0, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected auto or a finite number >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    defaults = ProbeSettings()
    parser = argparse.ArgumentParser(prog="python -m visnet.word_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset (a path, or layout:path) whose records have names")
    parser.add_argument("--split", choices=("open-set", "closed-set", "all"), default="all",
                        help="open-set: the protocol's base classes; closed-set: its training split; all: every "
                             "record, or the training split where the layout marks one (default)")
    parser.add_argument("--out", required=True, help="directory for probe.keras, vocabulary.json, probe.json")
    parser.add_argument("--backbone", default=defaults.backbone, help=f"frozen trunk (default {defaults.backbone})")
    parser.add_argument("--weights", default=defaults.weights,
                        help=f"imagenet, a weights file, or none (default {defaults.weights})")
    parser.add_argument("--image-size", type=size, default=defaults.image_size, metavar="HxW",
                        help="input size (default 224x168)")
    parser.add_argument("--blocks", type=int, default=defaults.blocks,
                        help=f"the trunk's last N blocks give features (default {defaults.blocks})")
    parser.add_argument("--folds", type=int, default=defaults.folds,
                        help=f"groups of classes for the out-of-class calibration (default {defaults.folds})")
    parser.add_argument("--l2", type=float, default=defaults.l2, help=f"probe L2 weight (default {defaults.l2:g})")
    parser.add_argument("--epochs", type=int, default=defaults.epochs,
                        help=f"passes over the features per probe (default {defaults.epochs})")
    parser.add_argument("--calibration-c", type=float, default=defaults.calibration_c,
                        help=f"inverse L2 strength of the calibration (default {defaults.calibration_c:g})")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate,
                        help=f"Adam's learning rate for the probes (default {defaults.learning_rate:g})")
    parser.add_argument("--candidates", type=int, default=defaults.candidates,
                        help=f"best words per photo the calibration fits (default {defaults.candidates})")
    parser.add_argument("--text-languages", default=",".join(defaults.text_languages),
                        help="stop-word lists, comma-separated (default en,fr)")
    parser.add_argument("--min-word-count", type=int, default=defaults.min_word_count,
                        help=f"words in fewer training names are left out (default {defaults.min_word_count})")
    parser.add_argument("--imagenet-weight", type=_weight, default=None, metavar="auto|W",
                        help="weight of the trunk's ImageNet classes in text search, where query words name them "
                             "(`jeans` -> jean); auto chooses it on classes each probe did not see (default auto)")
    parser.add_argument("--imagenet-compounds", action=argparse.BooleanOptionalAction,
                        default=defaults.imagenet_compounds,
                        help="a query word also names the ImageNet classes it ends, bag -> mailbag (default off: "
                             "on held-out base classes of fashion-products it ranked worse)")
    parser.add_argument("--check-images", choices=("decode", "header", "exists", "none"), default="decode",
                        help="how hard to check image files before use (default decode; unreadable ones are "
                             "skipped and counted)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = ProbeSettings(backbone=args.backbone, weights=args.weights, image_size=args.image_size,
                                 blocks=args.blocks, folds=args.folds, l2=args.l2, epochs=args.epochs, learning_rate=args.learning_rate,
                                 candidates=args.candidates, calibration_c=args.calibration_c, seed=args.seed, min_word_count=args.min_word_count,
                                 text_languages=tuple(w for w in args.text_languages.split(",") if w),
                                 imagenet_weight=args.imagenet_weight, imagenet_compounds=args.imagenet_compounds)
    except ValueError as error:
        parser.error(str(error))
    if os.path.isfile(args.out):
        parser.error(f"--out must be a directory, not a file. Received: {args.out}")
    try:
        from visnet.backbones import backbone_info
        from visnet.training.data import split_records

        backbone_info(settings.backbone)  # an unknown backbone fails before the photos are read

        records = split_records(args.data, args.split, progress=not args.no_progress, check=args.check_images)
        probe = WordProbe.fit(records, settings, progress=not args.no_progress)
        probe.save(args.out)
    except (ValueError, OSError) as error:
        return report_error(error)
    check = probe.info["out_of_class_precision_at_1"]
    if probe.info["calibration"]["slope"] <= 0:
        print("warning: on classes it did not see, the probe ranked words the wrong way, so its scores were dropped: "
              "every photo gets the same tags (the words' out-of-class rates). More photos or classes, or another "
              "--backbone, should help.", file=sys.stderr)
    skipped = f" ({probe.info['skipped']} unreadable photos skipped)" if probe.info["skipped"] else ""
    print(f"word probe: {probe.info['photos']} photos of {probe.info['classes']} classes{skipped}, "
          f"{probe.info['vocabulary_size']} words -> {args.out}")
    print(f"tag precision@1 on classes each probe did not see: calibrated {check['calibrated']:.3f}, "
          f"uncalibrated {check['probe']:.3f}, always the most common words {check['frequency_baseline']:.3f}")
    imagenet = probe.info["imagenet"]
    if imagenet:
        recall = imagenet["out_of_class_text_recall_at_1"]
        how = "chosen on classes each probe did not see" if imagenet["chosen"] else "as set"
        print(f"ImageNet classes in text search: weight {imagenet['weight']:g} ({how}); " + (
            "text -> image Recall@1 on those classes by weight: " + ", ".join(f"{w} {r:.3f}" for w, r in recall.items())
            if recall else "no training name has a known word to measure it on"))
    else:
        print("ImageNet classes in text search: none (the trunk has no ImageNet classifier)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
