"""From a training config to the records, validation split and sampled tf.data stream of a run."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from visnet.data.image_spec import ImageSpec
from visnet.data.protocol import Protocol, find_protocol
from visnet.data.readers import load_dataset, parse_spec
from visnet.data.records import Dataset
from visnet.data.samplers import PairSampler, PKSampler, TripletSampler, WordSampler
from visnet.training.config import TrainConfig, parse_val


@dataclasses.dataclass
class TrainingData:
    train: Dataset
    val: Dataset | None
    classes: list[str]  # training classes, in label-id order


def split_records(data: str, split: str = "all", progress: bool = True, **options) -> Dataset:
    """The training records of `data` (a path or layout:path): `open-set`, the protocol's base
    classes; `closed-set`, its training split; `all`, every record (those marked as the training
    split when the layout marks one). `options` go to the reader."""
    if split not in ("open-set", "closed-set", "all"):
        raise ValueError(f"split must be open-set, closed-set or all. Received: split={split!r}")
    layout, path = parse_spec(data)
    dataset = load_dataset(f"{layout}:{path}", progress=progress, **options)
    if split != "all":
        protocol_path = find_protocol(path)
        if protocol_path is None:
            raise ValueError(f"split={split!r} needs a protocol.json in {path}; use split=all.")
        protocol = Protocol.load(protocol_path)
        if split == "open-set":
            return protocol.open_set(dataset, missing="skip").base
        return protocol.closed_set(dataset, missing="skip")[0]
    if any(r.split for r in dataset):
        return dataset.where(split="train")
    return dataset


def read_training_data(config: TrainConfig, progress: bool = True) -> TrainingData:
    """Reads the data, applies the split, carves the validation set (seeded by `config.seed`)."""
    options = {"check": config.check_images}
    if config.label:
        options["label"] = config.label
    if config.text_columns:
        layout = parse_spec(config.data)[0]
        if layout not in ("benchmark", "kaggle", "csv"):
            raise ValueError(f"text_columns applies to the benchmark, kaggle and csv layouts. Received layout {layout!r}")
        options["text_columns"] = list(config.text_columns)
    dataset = split_records(config.data, config.split, progress, **options)

    mode, fraction = parse_val(config.val)
    rng = np.random.default_rng([config.seed, 17])
    val = None
    if mode == "classes":
        counts = dataset.class_counts()
        candidates = sorted(c for c, n in counts.items() if n >= 2)
        n_val = max(2, int(round(fraction * len(counts))))
        if len(candidates) < n_val or len(counts) - n_val < 2:
            raise ValueError(f"val={config.val!r} needs {n_val} classes with 2+ images and 2 left for training; "
                             f"{dataset.name} has {len(candidates)} such classes of {len(counts)}.")
        held = set(rng.choice(candidates, n_val, replace=False).tolist())
        val = dataset.where(labels=held)
        dataset = dataset.where(labels=set(counts) - held)
    elif mode == "images":
        by_class: dict[str, list[int]] = {}
        for i, record in enumerate(dataset):
            by_class.setdefault(record.label, []).append(i)
        held = set()
        for members in by_class.values():
            n = min(int(round(fraction * len(members))), len(members) - 1)  # every class keeps one
            if n >= 2:
                held.update(rng.choice(members, n, replace=False).tolist())
        if len(held) < 2:
            need = int(np.ceil(2 / fraction))
            raise ValueError(f"val={config.val!r} holds out no image: with F={fraction} a class needs about "
                             f"{need}+ images to give 2 to validation.")
        val = dataset.filter(lambda r, ids={dataset[i].id for i in held}: r.id in ids, "val images")
        dataset = dataset.filter(lambda r, ids={dataset[i].id for i in held}: r.id not in ids, "train images")
    if val is not None:
        val = _balanced_subset(val, config.val_max_images, rng)
    return TrainingData(dataset, val, dataset.classes)


VAL_PER_CLASS = 60  # as the benchmark protocol's novel pool


def _balanced_subset(dataset: Dataset, limit: int, rng: np.random.Generator) -> Dataset:
    """At most `limit` records and `VAL_PER_CLASS` per class, as even across classes as possible:
    one huge class must not make retrieval look easy (mAP is high by chance when most images
    share a label)."""
    by_class: dict[str, list[str]] = {}
    for record in dataset:
        by_class.setdefault(record.label, []).append(record.id)
    by_class = {c: ids if len(ids) <= VAL_PER_CLASS else list(rng.choice(ids, VAL_PER_CLASS, replace=False))
                for c, ids in by_class.items() if len(ids) >= 2}
    if len(by_class) > limit // 2:  # every class keeps 2+ images, or its queries find nothing
        keep = rng.choice(sorted(by_class), limit // 2, replace=False)
        by_class = {c: by_class[c] for c in sorted(keep)}
    quota = {c: 0 for c in by_class}
    remaining = limit
    for c in by_class:  # 2 each first
        quota[c] = 2
    remaining -= 2 * len(by_class)
    while remaining > 0:
        open_classes = [c for c in by_class if quota[c] < len(by_class[c])]
        if not open_classes:
            break
        share = max(1, remaining // len(open_classes))
        for c in open_classes:
            take = min(share, len(by_class[c]) - quota[c], remaining)
            quota[c] += take
            remaining -= take
    keep = {str(i) for c, ids in by_class.items() for i in rng.permutation(ids)[: quota[c]]}
    return dataset.select([r.id for r in dataset if r.id in keep], "val subset")


def batch_layout(loss_config: dict) -> str:
    """`pairs` (PairSampler halves), `triplets` (explicit thirds) or `pk` (P x K batches)."""
    if loss_config["name"] == "contrastive" and loss_config.get("layout", "halves") == "halves":
        return "pairs"
    if loss_config["name"] in ("triplet", "hinge") and loss_config.get("mining") == "none":
        return "triplets"
    return "pk"


def check_batch_settings(config: TrainConfig, loss_config: dict) -> None:
    """Loss and batch settings that cannot work, refused before any data is read."""
    from visnet.losses import losses

    losses.get(dict(loss_config))  # the loss checks its own parameters
    name, layout = loss_config["name"], batch_layout(loss_config)
    if name == "sampled-softmax":
        from visnet.data.text import TextTokenizer

        TextTokenizer(languages=tuple(config.text_languages))  # an unknown stop-word language
    if layout == "triplets" and config.batch_size < 3:
        raise ValueError(f"Explicit triplet batches need batch_size >= 3. Received: batch_size={config.batch_size}")
    if layout == "pk" and config.p < 2:
        raise ValueError(f"P x K batches need p >= 2 classes (with one there is no negative). Received: p={config.p}")
    if name in ("triplet", "hinge") and layout == "pk" and config.k < 2:
        raise ValueError("k=1 with a triplet loss gives no positive pair in a batch: use k >= 2.")
    if name == "prototypical" and config.k <= loss_config.get("shots", 1):
        raise ValueError(f"Prototypical training needs k > shots (queries per class). "
                         f"Received: k={config.k}, shots={loss_config.get('shots')}")


def make_sampler(config: TrainConfig, loss_config: dict, labels: np.ndarray, seed: int, bags=None):
    """The sampler a loss needs: P x K batches, pair batches, explicit triplet batches, or
    (image, word) batches of uniform word sampling (`bags`: each record's word ids)."""
    if loss_config["name"] == "sampled-softmax":
        return WordSampler(bags, config.batch_size, seed=seed, power=config.word_power)
    n_classes = len(np.unique(labels))
    layout = batch_layout(loss_config)
    if layout == "pairs":
        half = config.batch_size // 2
        return PairBatches(PairSampler(labels, max(half, len(labels)), config.p_same, seed), half)
    if layout == "triplets":
        third = config.batch_size // 3
        return TripletBatches(TripletSampler(labels, max(third, len(labels)), seed), third)
    if config.p > n_classes:
        raise ValueError(f"P x K batches need p <= the number of training classes. Received: p={config.p}, "
                         f"but the training data has {n_classes} classes.")
    if config.p * config.k > len(labels):
        raise ValueError(f"A batch of p x k = {config.p} x {config.k} = {config.p * config.k} images is larger "
                         f"than the {len(labels)} training images.")
    # An epoch covers about as many images as the training set (and every class at least once).
    batches = max(-(-n_classes // config.p), len(labels) // (config.p * config.k))
    return PKSampler(labels, config.p, config.k, batches_per_epoch=batches, seed=seed)


class PairBatches:
    """Batches [first images; second images] of `PairSampler` pairs (ContrastiveLoss 'halves')."""

    def __init__(self, sampler: PairSampler, pairs_per_batch: int):
        self.sampler, self.pairs = sampler, pairs_per_batch
        self.batches_per_epoch = max(1, len(sampler) // pairs_per_batch)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def epoch(self, epoch: int) -> np.ndarray:
        first, second, _ = self.sampler.epoch(epoch)
        n = self.batches_per_epoch * self.pairs
        return np.concatenate([first[:n].reshape(-1, self.pairs), second[:n].reshape(-1, self.pairs)], axis=1)


class TripletBatches:
    """Batches [anchors; positives; negatives] of `TripletSampler` triplets (mining 'none')."""

    def __init__(self, sampler: TripletSampler, triplets_per_batch: int):
        self.sampler, self.triplets = sampler, triplets_per_batch
        self.batches_per_epoch = max(1, len(sampler) // triplets_per_batch)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def epoch(self, epoch: int) -> np.ndarray:
        triplets = self.sampler.epoch(epoch)[: self.batches_per_epoch * self.triplets]
        blocks = triplets.reshape(self.batches_per_epoch, self.triplets, 3)
        return np.concatenate([blocks[..., 0], blocks[..., 1], blocks[..., 2]], axis=1)


def image_spec(config: TrainConfig, normalization: str) -> ImageSpec:
    return ImageSpec(config.image_size[0], config.image_size[1], config.resize, normalization=normalization)


def dataset_name(config: TrainConfig) -> str:
    return os.path.basename(os.path.normpath(parse_spec(config.data)[1]))


def run_vocabulary(config: TrainConfig, records: Dataset, run_dir: str | None = None):
    """The vocabulary of a weak-label run: built from the training records' text, or the one
    saved in `run_dir` (a resumed run keeps its word ids)."""
    from visnet.data.text import NON_VISUAL_WORDS, TextTokenizer, Vocabulary

    if run_dir is not None:
        return Vocabulary.load(os.path.join(run_dir, "vocabulary.json"))
    texts = [r.text for r in records if r.text]
    if not texts:
        raise ValueError(f"The weakly architecture learns from text, but no training record of {records.name} has "
                         "any (kaggle and benchmark layouts read productDisplayName; manifests a text column).")
    tokenizer = TextTokenizer(languages=tuple(config.text_languages),
                              drop_words=tuple(NON_VISUAL_WORDS) + tuple(config.drop_words))
    return Vocabulary.build(map(tokenizer, texts), max_size=config.vocabulary_size, min_count=config.min_word_count,
                            tokenizer=tokenizer)
