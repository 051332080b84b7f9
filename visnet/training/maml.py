"""Model-Agnostic Meta-Learning (Finn, Abbeel & Levine, 2017) for N-way K-shot classification.

MAML learns initial weights θ from which a few gradient steps on an episode's support set give a
good classifier of that episode's queries:

    inner (per episode):  θ'_i = θ - α ∇θ L_support(θ)          (`inner_steps` times)
    outer (per meta-batch): θ ← θ - β ∇θ Σ_episodes L_query(θ')

The second-order variant differentiates through the inner updates (a Hessian-vector product
per step); `first_order=True` treats the inner gradients as constants (FOMAML), which costs
one backward pass less. The model is any Keras model mapping images to `ways` logits; weights
are swapped in with `model.stateless_call`, so the same functional model serves every episode,
and TensorFlow's `GradientTape` takes the (nested) gradients.

    maml = MAML(classifier, ways=5, inner_steps=1, inner_lr=0.4, outer_lr=1e-3)
    loss, accuracy = maml.meta_step([(support_x, support_y, query_x, query_y), ...])
    accuracy = maml.evaluate_episode(support_x, support_y, query_x, query_y)
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def _cross_entropy(labels, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits))


class MAML:
    """Meta-learning of a classifier's initial weights.

    Args:
        model: keras.Model. Images (or features) -> `ways` logits.
        ways: int. Classes per episode (labels are 0 .. ways - 1 within an episode).
        inner_steps: int. Gradient steps on the support set.
        inner_lr: float. α, the inner learning rate.
        outer_lr: float. β, the meta learning rate (Adam).
        first_order: bool. First-order MAML (no gradient through the inner updates).
        optimizer: keras optimizer or None (default: Adam(outer_lr)).
    """

    def __init__(self, model: keras.Model, ways: int, inner_steps: int = 1, inner_lr: float = 0.4,
                 outer_lr: float = 1e-3, first_order: bool = False, optimizer=None):
        if ways < 2:
            raise ValueError(f"ways must be >= 2. Received: ways={ways}")
        if inner_steps < 1:
            raise ValueError(f"inner_steps must be >= 1. Received: inner_steps={inner_steps}")
        if inner_lr <= 0 or outer_lr <= 0:
            raise ValueError(f"inner_lr and outer_lr must be > 0. Received: inner_lr={inner_lr}, outer_lr={outer_lr}")
        if model.outputs[0].shape[-1] != ways:
            raise ValueError(f"The model has {model.outputs[0].shape[-1]} outputs but ways={ways}.")
        self.model, self.ways, self.inner_steps = model, ways, inner_steps
        self.inner_lr, self.outer_lr, self.first_order = inner_lr, outer_lr, first_order
        self.optimizer = optimizer or keras.optimizers.Adam(outer_lr)
        if not self.optimizer.built:  # a resumed run's optimizer comes built, with its moments
            self.optimizer.build(model.trainable_variables)
        # Evaluation adapts and predicts in one graph (traced once per episode shape): many times faster.
        self._adapted_logits = tf.function(
            lambda weights, sx, sy, qx: self._logits(self.adapt(weights, sx, sy), qx), reduce_retracing=True)

    def _logits(self, weights, x, training: bool = True):
        logits, _ = self.model.stateless_call(weights, [v.value for v in self.model.non_trainable_variables], x,
                                              training=training)
        return logits

    def adapt(self, weights, support_x, support_y):
        """The weights after `inner_steps` gradient steps on the support set (differentiable unless first-order)."""
        for _ in range(self.inner_steps):
            with tf.GradientTape() as tape:
                tape.watch(weights)
                loss = _cross_entropy(support_y, self._logits(weights, support_x))
            gradients = tape.gradient(loss, weights)
            if self.first_order:
                gradients = [tf.stop_gradient(g) for g in gradients]
            weights = [w - self.inner_lr * g for w, g in zip(weights, gradients)]
        return weights

    def meta_gradients(self, episodes):
        """(mean query loss, mean query accuracy, gradients w.r.t. the model's trainable variables)."""
        variables = self.model.trainable_variables
        with tf.GradientTape() as outer:
            weights = [tf.identity(v.value) for v in variables]
            outer.watch(weights)
            losses, accuracies = [], []
            for support_x, support_y, query_x, query_y in episodes:
                adapted = self.adapt(weights, support_x, support_y)
                logits = self._logits(adapted, query_x)
                losses.append(_cross_entropy(query_y, logits))
                accuracies.append(tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32),
                                                                  tf.cast(query_y, tf.int32)), tf.float32)))
            loss = tf.add_n(losses) / len(losses)
        gradients = outer.gradient(loss, weights)
        return float(loss), float(tf.add_n(accuracies) / len(accuracies)), gradients

    def meta_step(self, episodes) -> tuple[float, float]:
        """One outer update from a meta-batch of episodes (support_x, support_y, query_x, query_y)."""
        if not episodes:
            raise ValueError("meta_step needs at least one episode.")
        loss, accuracy, gradients = self.meta_gradients(episodes)
        self.optimizer.apply(gradients, self.model.trainable_variables)
        return loss, accuracy

    def evaluate_episode(self, support_x, support_y, query_x, query_y) -> float:
        """Query accuracy after adapting to the support set (the model's own weights are unchanged).

        Batch normalisation uses the query batch's statistics, as in meta-training (and as Finn et
        al. do): meta-training never updates the moving averages inference mode would use.
        """
        weights = [tf.identity(v.value) for v in self.model.trainable_variables]
        logits = self._adapted_logits(weights, tf.convert_to_tensor(support_x), tf.convert_to_tensor(support_y),
                                      tf.convert_to_tensor(query_x))
        predictions = np.argmax(np.asarray(logits), axis=-1)
        return float(np.mean(predictions == np.asarray(query_y)))


#: arch_options of `--arch maml` that set the meta-learning loop (the others build the network).
LOOP_OPTIONS = {"inner_steps": 1, "inner_lr": 0.4, "first_order": False, "meta_batch": 4}
#: Validation episodes per epoch (drawn once from the validation classes, the same every epoch).
VALIDATION_EPISODES = 20


def train_maml(config, resume: bool = False, progress: bool = True, log=print):
    """Meta-trains `--arch maml` on N-way K-shot episodes of the training classes and writes a run.

    Episodes are `config.p` ways with `config.shots` (default k // 2) support and the rest of
    `config.k` as queries per class; each step averages `meta_batch` episodes; an epoch is
    `steps_per_epoch` steps (default 100). Validation, checkpoints and the run directory are those
    of every run (`best.keras`, `state.json`, `val_mAP` of the embedding in the logs), so
    evaluation, export, reports and tuning take MAML runs as they are. Checkpoints select on
    `val_episode_accuracy`, MAML's own rule (adapt on the support set, classify the queries) on
    episodes of the validation classes, when they can be drawn, else on `val_mAP`. Images are
    not augmented.

    `resume=True` continues from the last checkpoint: its weights, the outer optimizer's state
    (saved with the model) and the episode stream at the step it reached, so a resumed run
    takes the same steps as one that was never stopped.
    """
    import copy
    import csv
    import json
    import os
    import time

    from visnet.data.pipeline import load_images
    from visnet.data.samplers import EpisodeSampler
    from visnet.models.common import embedding_model
    from visnet.training.builder import (
        build_model,
        input_normalization,
        normalized_images,
        resolve_loss,
        versions,
    )
    from visnet.training.callbacks import RetrievalValidation, RunCheckpoint, resume_state
    from visnet.training.data import image_spec, read_training_data
    from visnet.training.runs import Run

    state, finished = resume_state(config.out, resume, config.epochs, log)
    if finished:
        return Run(config.out)
    loop = {**LOOP_OPTIONS, **{k: v for k, v in config.arch_options.items() if k in LOOP_OPTIONS}}
    ways, shots = config.p, config.shots or max(1, config.k // 2)
    queries = config.k - shots
    if queries < 1:
        raise ValueError(f"MAML episodes need queries: k ({config.k}) must exceed shots ({shots}).")
    if int(loop["meta_batch"]) < 1:
        raise ValueError(f"meta_batch must be >= 1. Received: meta_batch={loop['meta_batch']}")
    build_config = copy.deepcopy(config)
    build_config.arch_options = {**{k: v for k, v in config.arch_options.items() if k not in LOOP_OPTIONS},
                                 "ways": ways}
    keras.utils.set_random_seed(config.seed)
    model = build_model(build_config, resolve_loss(config))  # settings fail fast, before any image is read
    optimizer = keras.optimizers.Adam(config.lr)
    if state is not None:
        import visnet.layers  # noqa: F401  (registers the custom layers)

        model = keras.models.load_model(os.path.join(config.out, state["last"]))
        log(f"resuming after epoch {state['epochs_done']} from {state['last']}")
        if getattr(model, "optimizer", None) is None:  # written before MAML checkpoints held the optimizer
            log("the checkpoint holds no optimizer state: the outer optimizer starts afresh")
            model.compile(optimizer=optimizer)
        optimizer = model.optimizer
    else:
        model.compile(optimizer=optimizer)  # so every checkpoint carries the optimizer's state
    data = read_training_data(config, progress=progress)
    log(data.train.summary())
    spec = image_spec(config, input_normalization(config))
    images, kept = load_images(data.train.paths, image_spec(config, "none"), progress=progress)
    images = normalized_images(images, spec.normalization)
    labels = data.train.label_ids(data.classes)[kept]
    steps = config.steps_per_epoch or 100
    meta_batch = int(loop["meta_batch"])
    sampler = EpisodeSampler(labels, ways, shots, queries, episodes=steps * meta_batch * config.epochs,
                             seed=config.seed)
    maml = MAML(model, ways, int(loop["inner_steps"]), float(loop["inner_lr"]), config.lr,
                bool(loop["first_order"]), optimizer)
    embedder = embedding_model(model)
    validation = None
    if data.val is not None:
        val_images, val_kept = load_images(data.val.paths, image_spec(config, "none"))
        validation = RetrievalValidation(normalized_images(val_images, spec.normalization),
                                         np.array(data.val.labels)[val_kept])
    val_episodes = []
    if validation is not None:
        try:
            val_sampler = EpisodeSampler(validation.labels, ways, shots, queries, VALIDATION_EPISODES, config.seed)
            val_episodes = [val_sampler.episode(i) for i in range(len(val_sampler))]
        except ValueError as error:  # too few validation classes or images for the episodes
            log(f"no validation episodes ({error}): checkpoints select on val_mAP")

    def measure() -> dict:
        logs = validation.measure(embedder) if validation is not None else {}
        if val_episodes:
            logs["val_episode_accuracy"] = float(np.mean([
                maml.evaluate_episode(validation.images[e.support], e.support_labels, validation.images[e.query],
                                      e.query_labels) for e in val_episodes]))
        return logs

    os.makedirs(config.out, exist_ok=True)
    config.save(os.path.join(config.out, "config.json"))
    if state is None:
        info = {"arch": "maml", "loss": {"name": "maml", "ways": ways, "shots": shots, "queries": queries, **loop},
                "image_spec": spec.to_dict(), "classes": data.classes, "train_images": len(labels),
                "val_images": 0 if validation is None else len(validation.labels), "steps_per_epoch": steps,
                "parameters": model.count_params(), "versions": versions()}
        if validation is not None:
            info["untrained"] = measure()
            log("untrained: " + ", ".join(f"{k} {v:.3f}" for k, v in info["untrained"].items()))
        with open(os.path.join(config.out, "run.json"), "w", encoding="utf-8") as handle:
            json.dump(info, handle, indent=2)
    monitor = "val_episode_accuracy" if val_episodes else "val_mAP" if validation is not None else None
    checkpoint = RunCheckpoint(config.out, monitor, config.patience, state)
    checkpoint.set_model(model)
    start = checkpoint.state["epochs_done"]
    index = start * steps * meta_batch  # the episode stream continues where it stopped
    for epoch in range(start, config.epochs):
        began = time.perf_counter()
        losses, accuracies = [], []
        for _ in range(steps):
            episodes = []
            for _ in range(meta_batch):
                episode = sampler.episode(index)
                index += 1
                episodes.append((images[episode.support], episode.support_labels,
                                 images[episode.query], episode.query_labels))
            loss, accuracy = maml.meta_step(episodes)
            losses.append(loss)
            accuracies.append(accuracy)
        seconds = time.perf_counter() - began
        logs = {"loss": float(np.mean(losses)), "query_accuracy": float(np.mean(accuracies)),
                "epoch_seconds": seconds, "images_per_second": steps * meta_batch * ways * config.k / seconds,
                **measure()}
        log(f"epoch {epoch + 1}/{config.epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in logs.items()))
        checkpoint.on_epoch_end(epoch, logs)
        history = os.path.join(config.out, "history.csv")
        new_file = not os.path.exists(history)
        with open(history, "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, ["epoch", *logs])
            if new_file:
                writer.writeheader()
            writer.writerow({"epoch": epoch, **logs})
        if checkpoint.state.get("stopped_early"):
            break
    return Run(config.out)
