"""KerasTuner on visnet runs: each trial is a `visnet.train` run, scored by a retrieval metric.

    hypermodel = VisnetHyperModel(TrainConfig(arch="capsule", data=..., split="open-set"))
    tuner = make_tuner("random", hypermodel, "val_mAP", max_trials=8, directory="tuning-runs/x")
    tuner.search()
    best = tuner.best_run()          # a run directory visnet.evaluate and visnet.export accept

`VisnetHyperModel.build(hp)` builds the model with `visnet.training.trainer.build_model`, the
builder `python -m visnet.train` uses; `RunTuner.run_trial` trains the trial's configuration
with `visnet.training.trainer.train` into `<directory>/search/runs/trial_<id>/` and reports the
best value of the objective over the epochs, read from the run's per-epoch logs (`state.json`,
the same `val_mAP` / `val_recall@k` the training prints). A trial interrupted mid-way resumes
from its last checkpoint when the search is started again; finished trials are not redone.
"""

from __future__ import annotations

import copy
import json
import os
import time

import keras_tuner

from tuning.spaces import conditions, narrowed, space
from visnet.training.config import TrainConfig

TUNERS = ("random", "hyperband", "bayesian")
#: Objectives a search may optimise: retrieval metrics from the per-epoch logs (never the loss).
OBJECTIVES = ("val_mAP", "val_recall@1", "val_recall@5")
PROJECT = "search"


class VisnetHyperModel(keras_tuner.HyperModel):
    """A visnet architecture with its search space.

    Args:
        base: TrainConfig. The settings every trial starts from (data, split, epochs, ...).
        fixed: mapping. Hyperparameters to fix or narrow (see `tuning.spaces.narrowed`).
    """

    def __init__(self, base: TrainConfig, fixed: dict | None = None, **kwargs):
        super().__init__(name=f"visnet-{base.arch}", **kwargs)
        self.base, self.fixed = base, dict(fixed or {})
        self.space = space(base.arch)
        self.scopes = conditions(base.arch, base)
        unknown = sorted(set(self.fixed) - set(self.scopes))
        if unknown:
            raise ValueError(f"The {base.arch} search space has no {', '.join(unknown)}. "
                             f"Its hyperparameters: {', '.join(self.scopes)}.")

    def config(self, hp) -> TrainConfig:
        """The trial's TrainConfig: the base settings with the space's hyperparameters applied."""
        narrowed(hp, {k: v for k, v in self.fixed.items() if k not in hp.values}, self.scopes)
        config = copy.deepcopy(self.base)
        for key, value in self.space(hp, config).items():
            if not hasattr(config, key):
                raise ValueError(f"The {config.arch} search space sets an unknown setting {key!r}.")
            setattr(config, key, value)
        if "tuner/epochs" in hp.values:  # Hyperband's budget for this trial
            config.epochs = int(hp.values["tuner/epochs"])
        return config.validate()

    def build(self, hp):
        """The trial's embedding model, built as `visnet.train` builds it."""
        from visnet.training.trainer import build_model, resolve_loss

        config = self.config(hp)
        return build_model(config, resolve_loss(config))


class RunTuner(keras_tuner.Tuner):
    """A Tuner whose trials are visnet training runs (see the module docstring)."""

    def __init__(self, oracle, hypermodel: VisnetHyperModel, progress: bool = False, **kwargs):
        super().__init__(oracle, hypermodel, **kwargs)
        self.progress = progress

    def run_dir(self, trial_id: str) -> str:
        return os.path.join(self.project_dir, "runs", f"trial_{trial_id}")

    def run_trial(self, trial, *args, **kwargs):
        from visnet.training.trainer import train

        config = self.hypermodel.config(trial.hyperparameters)
        config.out = self.run_dir(trial.trial_id)
        resume = os.path.exists(os.path.join(config.out, "state.json"))
        begin = time.perf_counter()
        train(config, resume=resume, progress=self.progress, log=lambda message: None)
        with open(os.path.join(config.out, "state.json"), encoding="utf-8") as handle:
            history = json.load(handle)["history"]
        objective = self.oracle.objective.name
        values = [epoch[objective] for epoch in history if objective in epoch]
        if not values:
            raise ValueError(f"The trial's logs have no {objective!r}: the search needs validation data "
                             f"(--val) to score trials.")
        summary = {"epochs": len(history), "seconds": round(time.perf_counter() - begin, 1),
                   "best_epoch": 1 + max(range(len(values)), key=values.__getitem__), "resumed": resume}
        with open(os.path.join(config.out, "trial.json"), "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
        return {objective: max(values)}

    def load_model(self, trial):
        from visnet.training.runs import Run

        return Run(self.run_dir(trial.trial_id)).model()

    def save_model(self, trial_id, model, step=0):  # runs save themselves
        return None

    def best_run(self) -> str:
        """The run directory of the best finished trial."""
        best = self.oracle.get_best_trials(1)
        if not best:
            raise ValueError("No trial finished: there is no best run.")
        return self.run_dir(best[0].trial_id)


def make_tuner(kind: str, hypermodel: VisnetHyperModel, objective: str = "val_mAP", max_trials: int = 8,
               directory: str = "tuning-runs", seed: int = 0, overwrite: bool = False, progress: bool = False):
    """A `RunTuner` with a `random`, `hyperband` or `bayesian` oracle maximising `objective`.

    Hyperband's budget is the base configuration's `epochs` (its `max_epochs`), and it runs as many
    trials as its brackets need; `max_trials` bounds the other two.
    """
    if kind not in TUNERS:
        raise ValueError(f"tuner must be one of {TUNERS}. Received: tuner={kind!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be a retrieval metric from the epoch logs, one of {OBJECTIVES} "
                         f"(never the loss). Received: objective={objective!r}")
    if max_trials < 1:
        raise ValueError(f"max_trials must be >= 1. Received: max_trials={max_trials}")
    goal = keras_tuner.Objective(objective, direction="max")
    # Fixed and narrowed entries are registered with the oracle, which then samples within them.
    known = narrowed(keras_tuner.HyperParameters(), hypermodel.fixed, hypermodel.scopes)
    common = {"seed": seed, "hyperparameters": known}
    if kind == "random":
        oracle = keras_tuner.oracles.RandomSearchOracle(goal, max_trials=max_trials, **common)
    elif kind == "bayesian":
        oracle = keras_tuner.oracles.BayesianOptimizationOracle(goal, max_trials=max_trials,
                                                                num_initial_points=min(2, max_trials), **common)
    else:
        oracle = keras_tuner.oracles.HyperbandOracle(goal, max_epochs=max(2, hypermodel.base.epochs), factor=3,
                                                     **common)
    return RunTuner(oracle, hypermodel, progress=progress, directory=directory, project_name=PROJECT,
                    overwrite=overwrite)
