"""Callbacks of a training run: retrieval validation every epoch, and crash-safe checkpoints."""

from __future__ import annotations

import glob
import json
import math
import os
import time

import keras
import numpy as np

from visnet.evaluation.retrieval import retrieval_metrics
from visnet.files import replacing, write_file
from visnet.models.common import embedding_model


class RetrievalValidation(keras.callbacks.Callback):
    """Adds `val_mAP`, `val_recall@1` and `val_recall@5` to the epoch logs.

    Each validation image is a query against all the others (leave-one-out), so checkpoints,
    early stopping and KerasTuner can select on retrieval quality instead of the loss.

    Args:
        images: array (n, height, width, 3), already normalised for the model.
        labels: one label per image.
        batch_size: int. Prediction batch size.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 128):
        super().__init__()
        self.images, self.labels, self.batch_size = images, np.asarray(labels), batch_size

    def measure(self, model: keras.Model) -> dict[str, float]:
        if len(model.inputs) > 1:  # a training model with more inputs (the weak-label model's words)
            if getattr(self, "_embedder", (None,))[0] is not model:
                self._embedder = (model, embedding_model(model))
            model = self._embedder[1]
        embeddings = model.predict(self.images, batch_size=self.batch_size, verbose=0)
        if isinstance(embeddings, dict):  # a training model with a head (normsoftmax proxies)
            embeddings = embeddings["embedding"]
        result = retrieval_metrics(embeddings, self.labels, embeddings, self.labels, ks=(1, 5), exclude_self=True)
        return {"val_mAP": result.mean_average_precision,
                "val_recall@1": result.recall[1], "val_recall@5": result.recall[5]}

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.measure(self.model))


class ThroughputLogger(keras.callbacks.Callback):
    """Adds `images_per_second` (training images through the whole pipeline) and `epoch_seconds`
    (training time, validation excluded) to the epoch logs."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.steps = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            seconds = time.perf_counter() - self.start
            logs["images_per_second"] = self.steps * self.batch_size / max(seconds, 1e-9)
            logs["epoch_seconds"] = seconds


def _save_model(model, path: str) -> None:
    with replacing(path, ".keras") as partial:
        model.save(partial)


class RunCheckpoint(keras.callbacks.Callback):
    """Keeps the last and the best model of a run, so a killed run resumes where it stopped.

    After every epoch: the model (with its optimizer state) goes to `last-epochNNNN.keras`, and
    to `best.keras` when `monitor` improved; then `state.json` (the epoch count, the best value
    and epoch, whether early stopping fired, the history) is replaced atomically and older
    `last-*` files are deleted. A kill at any moment leaves `state.json` naming a complete
    checkpoint.

    Args:
        run_dir: str. The run directory.
        monitor: str or None. Log key to maximise (`val_mAP`); None keeps the last as best.
        patience: int or None. Stop after this many epochs without a better `monitor` (the
            count survives a resume, since it is epochs since `best_epoch`).
        state: dict. The state loaded from an earlier run (to resume), or None.
    """

    def __init__(self, run_dir: str, monitor: str | None = "val_mAP", patience: int | None = None,
                 state: dict | None = None):
        super().__init__()
        self.run_dir, self.monitor, self.patience = run_dir, monitor, patience
        self.state = dict(state or {"epochs_done": 0, "best": None, "best_epoch": None, "history": [],
                                    "stopped_early": False})

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        last = os.path.join(self.run_dir, f"last-epoch{epoch + 1:04d}.keras")
        _save_model(self.model, last)
        value = logs.get(self.monitor) if self.monitor else None
        best = self.state["best"]
        improved = self.monitor is None or (
            value is not None and not math.isnan(value) and (best is None or value > best))
        if improved:
            best_path = os.path.join(self.run_dir, "best.keras")
            _save_model(self.model, best_path)
            self.state.update(best=value, best_epoch=epoch + 1)
        self.state["epochs_done"] = epoch + 1
        self.state["last"] = os.path.basename(last)
        self.state["history"].append({"epoch": epoch + 1, **logs})
        if self.patience and self.state["best_epoch"] and epoch + 1 - self.state["best_epoch"] >= self.patience:
            self.state["stopped_early"] = True
            self.model.stop_training = True
        write_file(os.path.join(self.run_dir, "state.json"), json.dumps(self.state, indent=2))
        for old in glob.glob(os.path.join(self.run_dir, "last-epoch*.keras")):
            if os.path.basename(old) != self.state["last"]:
                os.remove(old)


def resume_state(run_dir: str, resume: bool, epochs: int, log=print) -> tuple[dict | None, bool]:
    """(the state to continue from, or None for a new run; whether the run has nothing left to do).

    Raises when `resume` does not match the folder: nothing to resume, or a run already there.
    """
    state = load_state(run_dir) if resume else None
    if resume and state is None:
        raise FileNotFoundError(f"Nothing to resume in {run_dir}: no state.json (no finished epoch).")
    if not resume and os.path.exists(os.path.join(run_dir, "state.json")):
        raise FileExistsError(f"{run_dir} already holds a run: use --resume to continue it or another --out.")
    if state is not None and (state["epochs_done"] >= epochs or state.get("stopped_early")):
        why = "stopped early" if state.get("stopped_early") else "finished"
        log(f"{run_dir} has {why} after epoch {state['epochs_done']}: nothing to resume")
        return state, True
    return state, False


def load_state(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, "state.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
