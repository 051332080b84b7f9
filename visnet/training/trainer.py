"""`train(config)`: data -> sampler -> tf.data -> model -> fit, with validation, checkpoints and resume."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable

import numpy as np

from visnet.training.builder import (  # noqa: F401  (re-exported: the trainer's public names)
    build_model,
    input_normalization,
    normalized_images,
    resolve_loss,
    resolve_trunk,
    versions,
    with_defaults,
)
from visnet.training.config import TrainConfig
from visnet.training.phases import set_trunk_trainable, training_phases


def _is_chief(strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    jobs = resolver.cluster_spec().as_dict()
    if "chief" in jobs:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def _setup_devices(config: TrainConfig):
    import tensorflow as tf

    if config.cpu_replicas > 1:
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * config.cpu_replicas)
        except RuntimeError as error:
            raise RuntimeError(f"cpu_replicas must be set before TensorFlow starts: {error}") from error
    if config.strategy == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
            [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if config.strategy == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _optimizer(config: TrainConfig, steps_per_epoch: int, epochs: int | None = None, lr: float | None = None):
    import keras

    lr = lr or config.lr
    total = (epochs or config.epochs) * steps_per_epoch
    warmup = min(int(config.warmup_epochs * steps_per_epoch), total // 2)
    if config.schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            lr * (0.01 if warmup else 1.0), decay_steps=max(1, total - warmup), alpha=0.01,
            warmup_target=lr if warmup else None, warmup_steps=warmup)
    else:
        rate = lr
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, weight_decay=config.weight_decay or None)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay or 0.004)
    return keras.optimizers.Adam(rate, weight_decay=config.weight_decay or None)


def compile_training_model(model, config: TrainConfig, loss_config: dict, classes: int, steps_per_epoch: int,
                           vocabulary=None):
    """The model `fit` trains: the embedding model, plus class proxies for the normsoftmax loss
    or the word head of the weak-label model (training heads; runs load the embedding output
    alone), compiled with the optimizer.

    `vocabulary`: the `Vocabulary` of a `weakly` run (its size sizes the word head; with
    `types > 1` the lexicon types its words).
    """
    import keras

    from visnet.losses import losses

    loss = losses.get(dict(loss_config))
    if loss_config["name"] == "sampled-softmax":
        from visnet.data.text import load_type_lexicon, word_types
        from visnet.models import words_head

        types = int(config.arch_options.get("types", 1))
        lexicon = word_types(vocabulary, load_type_lexicon(config.lexicon)[1]) if types > 1 else None
        model = words_head(model, len(vocabulary), negatives=loss.negatives, close_negatives=loss.close_negatives,
                           types=types, word_types=lexicon, seed=config.seed)
    elif loss_config["name"] == "normsoftmax":
        from visnet.layers import CosineClassifier

        head = CosineClassifier(classes, name="proxies")(model.output)
        model = keras.Model(model.inputs, {"embedding": model.output, "cosines": head}, name=model.name)
        loss = {"embedding": None, "cosines": loss}
    first = training_phases(config)[0]
    model.compile(optimizer=_optimizer(config, steps_per_epoch, first.epochs, first.lr), loss=loss)
    return model


def training_targets(labels, proxies: bool):
    """What `fit` expects as y for the training model."""
    return {"embedding": labels, "cosines": labels} if proxies else labels


def training_batch(batch: dict, loss_config: dict):
    """A pipeline batch as the (x, y) of `fit`: the weak-label model reads (image, word) and its
    target is the positive's column (0) among the sampled words."""
    import tensorflow as tf

    if loss_config["name"] == "sampled-softmax":
        return (batch["image"], batch["label"]), tf.zeros_like(batch["label"])
    return batch["image"], training_targets(batch["label"], loss_config["name"] == "normsoftmax")


def train(config: TrainConfig, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)):
    """Trains `config.arch` and writes the run directory `config.out`. Returns the `Run`.

    Args:
        config: `TrainConfig`.
        resume: bool. Continue the run in `config.out` from its last checkpoint: epoch counter,
            weights, optimizer state and sampler position all continue.
        progress: bool. Keras progress bars and reading progress.
        log: callable for one-line messages.
    """
    config.validate()
    if not (resume and os.path.exists(os.path.join(config.out, "config.json"))):
        with_defaults(config)  # a resumed run's config.json already says what it runs
        config.validate()
    if not config.out:
        raise ValueError("out (the run directory) is required.")
    if config.arch == "maml":  # episodic meta-learning: its own loop, the same run directory
        if config.phases or config.freeze_epochs or config.freeze_batchnorm:
            raise ValueError("maml meta-learns its own loop: it takes no phases, freeze_epochs or freeze_batchnorm.")
        from visnet.training.maml import train_maml

        return train_maml(config, resume, progress, log)
    from visnet.training.callbacks import resume_state

    state, finished = resume_state(config.out, resume, config.epochs, log)
    if finished:
        from visnet.training.runs import Run

        return Run(config.out)
    loss_config = resolve_loss(config)
    from visnet.training.data import batch_layout, check_batch_settings

    check_batch_settings(config, loss_config)
    strategy = _setup_devices(config)
    if strategy.num_replicas_in_sync > 1 and batch_layout(loss_config) != "pk":
        raise ValueError(f"{batch_layout(loss_config)} batches cannot be split across "
                         f"{strategy.num_replicas_in_sync} replicas (each would get a slice of the pairing): "
                         "use P x K batches (mining other than none) or one replica.")
    chief = _is_chief(strategy)

    import keras
    import tensorflow as tf

    from visnet.data.augment import Augmentation
    from visnet.data.pipeline import load_images, sampled_dataset
    from visnet.training.callbacks import RetrievalValidation, RunCheckpoint, ThroughputLogger
    from visnet.training.data import image_spec, make_sampler, read_training_data
    from visnet.training.runs import Run

    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():  # the model first: its settings fail fast, before any image is read
        if state is not None:
            import visnet.layers  # noqa: F401

            model = keras.models.load_model(os.path.join(config.out, state["last"]))
            log(f"resuming {config.out} after epoch {state['epochs_done']}")
        else:
            model = build_model(config, loss_config)
    data = read_training_data(config, progress=progress)
    log(data.train.summary())
    spec = image_spec(config, input_normalization(config))
    raw_spec = image_spec(config, "none")
    train_set = data.train
    images = None
    if config.cache_images:
        images, kept = load_images(train_set.paths, raw_spec, progress=progress)
        if len(kept) < len(train_set):
            log(f"{len(train_set) - len(kept)} training images failed to decode and are left out")
            train_set = train_set.select([train_set[i].id for i in kept], "decodable")
    if state is not None:
        with open(os.path.join(config.out, "run.json"), encoding="utf-8") as handle:
            trained_classes = json.load(handle)["classes"]
        if trained_classes != data.classes:
            raise ValueError(f"The data's training classes changed since {config.out} started "
                             f"({len(trained_classes)} then, {len(data.classes)} now): resuming would mix label ids.")
    labels = train_set.label_ids(data.classes)
    vocabulary = bags = None
    if loss_config["name"] == "sampled-softmax":
        from visnet.training.data import run_vocabulary

        vocabulary = run_vocabulary(config, train_set, None if state is None else config.out)
        bags = vocabulary.bags(r.text for r in train_set)
        log(f"vocabulary: {len(vocabulary)} words; {sum(len(b) > 0 for b in bags)} of {len(bags)} training "
            f"images have words in it")
    sampler = make_sampler(config, loss_config, labels, config.seed, bags)
    steps = config.steps_per_epoch or len(sampler)
    augment = Augmentation(**config.augmentation) if config.augment else None

    validation = None
    if data.val is not None:
        val_images, val_kept = load_images(data.val.paths, raw_spec)
        val_labels = np.array(data.val.labels)[val_kept]
        validation = RetrievalValidation(normalized_images(val_images, spec.normalization), val_labels)
        log(f"validation: {len(val_labels)} images of {len(set(val_labels))} classes held out of training")

    # Only the chief worker writes the run; the others keep their checkpoints in a scratch folder.
    run_dir = config.out if chief else tempfile.mkdtemp(prefix="visnet-worker-")
    os.makedirs(run_dir, exist_ok=True)
    if state is None:
        with strategy.scope():
            model = compile_training_model(model, config, loss_config, len(data.classes), steps, vocabulary)

    start_epoch = state["epochs_done"] if state else 0
    if state is None and chief:
        config.save(os.path.join(config.out, "config.json"))
        if vocabulary is not None:
            vocabulary.save(os.path.join(config.out, "vocabulary.json"))
        info = {"arch": config.arch, "loss": loss_config, "image_spec": spec.to_dict(), "classes": data.classes,
                "train_images": len(train_set), "val_images": 0 if validation is None else len(validation.labels),
                "steps_per_epoch": steps, "batch_size": int(sampler.epoch(0).shape[1]),
                "parameters": model.count_params(), "replicas": strategy.num_replicas_in_sync,
                "strategy": config.strategy, "versions": versions()}
        if validation is not None:
            info["untrained"] = validation.measure(model)
            log(f"untrained: val_mAP {info['untrained']['val_mAP']:.3f}")
        if chief:
            with open(os.path.join(config.out, "run.json"), "w", encoding="utf-8") as handle:
                json.dump(info, handle, indent=2)

    # Resume exactly where the stream stopped: epochs of the run need not be the sampler's epochs.
    done = start_epoch * steps
    ds = sampled_dataset(None if images is not None else train_set.paths, labels, sampler, spec,
                         start_epoch=done // len(sampler), skip_batches=done % len(sampler), augment=augment,
                         seed=config.seed, images=images)
    ds = ds.map(lambda batch: training_batch(batch, loss_config))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)

    # One history across phases (each phase is a `fit` call) and resumes; a new run starts it afresh.
    history = os.path.join(run_dir, "history.csv")
    if state is None and os.path.exists(history):
        os.remove(history)
    # Throughput first: its epoch time must not include the validation pass.
    callbacks = [ThroughputLogger(int(sampler.epoch(0).shape[1]))]
    callbacks += [c for c in (validation,) if c is not None]
    callbacks += [RunCheckpoint(run_dir, "val_mAP" if validation else None, config.patience, state),
                  keras.callbacks.CSVLogger(history, append=True),
                  keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), update_freq="epoch")]
    verbose = 1 if progress and sys.stderr.isatty() else 2
    # Phases (the head on a frozen trunk, then more of the trunk): each starts with its blocks
    # opened and a fresh optimizer whose schedule spans the phase. A run resumed inside a phase
    # continues with the checkpoint's own trainable flags and optimizer state.
    phases = training_phases(config)
    backbone = resolve_trunk(config)[0]
    tuned = len(phases) > 1 or config.freeze_batchnorm
    for n, phase in enumerate(phases, start=1):
        if start_epoch >= phase.end:
            continue
        if start_epoch == phase.start and (tuned or n > 1):
            with strategy.scope():
                set_trunk_trainable(model, backbone, phase.trainable, config.freeze_batchnorm)
                model.compile(optimizer=_optimizer(config, steps, phase.epochs, phase.lr), loss=model.loss)
        if len(phases) > 1:
            log(f"phase {n}/{len(phases)}, {phase.describe()}")
        model.fit(ds, epochs=phase.end, initial_epoch=start_epoch, steps_per_epoch=steps, shuffle=False,
                  callbacks=callbacks, verbose=verbose)
        start_epoch = phase.end
        if model.stop_training:  # patience ran out
            break
    return Run(config.out)
