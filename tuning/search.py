"""Hyperparameter search on a retrieval metric:
`python -m tuning.search --arch capsule --tuner random --max-trials 8 --data PATH --out tuning-runs/x`.

Each trial is a `visnet.train` run with the architecture's search space (`tuning.spaces`)
applied, scored by `--objective` (val_mAP by default: the best epoch's value in the run's logs,
on validation classes carved from the training classes — with `--split open-set` never the
novel ones). The search directory resumes: run the same command again after an interruption
and finished trials are kept, an interrupted one continues from its checkpoint. Writes:

    OUT/search/            KerasTuner's state and one run per trial (search/runs/trial_N/)
    OUT/best-run/          a copy of the best trial's run: visnet.evaluate and visnet.export take it
    OUT/defaults/          with --compare-defaults: the untuned configuration, trained the same way
    OUT/results.csv, .md   trial, status, objective, epochs, wall time, hyperparameters
    OUT/objective.png      the objective per trial and the best so far
    OUT/search.json        settings, the best trial and its hyperparameters, wall time
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

from visnet.cli import key_value, report_error, size
from visnet.training.config import TrainConfig

DEFAULT_TRAIN = {"split": "open-set", "val": "classes:0.1"}


def build_parser() -> argparse.ArgumentParser:
    from tuning.tuner import OBJECTIVES, TUNERS

    parser = argparse.ArgumentParser(prog="python -m tuning.search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", required=True, help="architecture to tune (siamese, visnet, capsule, hybrid, "
                                                      "protonet, weakly)")
    parser.add_argument("--data", required=True, help="dataset as LAYOUT:PATH or a path (layout detected)")
    parser.add_argument("--out", required=True, help="search directory (created; reused to resume)")
    parser.add_argument("--tuner", choices=TUNERS, default="random", help="search strategy (default random)")
    parser.add_argument("--max-trials", type=int, default=8, help="trials of random and bayesian search (default 8)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="val_mAP",
                        help="retrieval metric to maximise, from the epoch logs (default val_mAP)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per trial; Hyperband's largest budget (default 5)")
    parser.add_argument("--fixed", action="append", default=[], type=key_value, metavar="NAME=VALUE",
                        help="fix a hyperparameter, e.g. margin=0.2 or mining=hard (repeatable)")
    parser.add_argument("--space", metavar="FILE",
                        help="JSON or YAML file fixing (value) or narrowing (list: choice; {min, max[, step, "
                             "sampling]}: range) hyperparameters")
    parser.add_argument("--split", default=DEFAULT_TRAIN["split"],
                        help="training records: open-set (the protocol's base classes; default), closed-set, all")
    parser.add_argument("--val", default=DEFAULT_TRAIN["val"],
                        help="validation carved from the training data (default classes:0.1)")
    parser.add_argument("--image-size", type=size, help="HEIGHTxWIDTH (default: visnet.train's)")
    parser.add_argument("--backbone", help="backbone (default: the architecture's)")
    parser.add_argument("--backbone-option", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                        help="backbone option, e.g. width=16 (repeatable)")
    parser.add_argument("--steps-per-epoch", type=int, help="batches per epoch (default: one pass of the sampler)")
    parser.add_argument("--train-option", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                        help="any other visnet.train setting (a TrainConfig field), e.g. augment=false (repeatable)")
    parser.add_argument("--compare-defaults", action="store_true",
                        help="also train the untuned configuration (OUT/defaults) and report its objective")
    parser.add_argument("--seed", type=int, default=0, help="seeds the search and the trials (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT")
    parser.add_argument("--progress", action="store_true", help="Keras progress bars for each trial")
    return parser


def read_space(path: str) -> dict:
    """A --space file: JSON, or YAML by its extension."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if path.endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of hyperparameter names. Received: {type(data).__name__}")
    return data


def base_config(args) -> TrainConfig:
    """The settings every trial starts from."""
    fields = {"arch": args.arch, "data": args.data, "split": args.split, "val": args.val, "epochs": args.epochs,
              "seed": args.seed, "backbone_options": dict(args.backbone_option)}
    if args.image_size:
        fields["image_size"] = args.image_size
    if args.backbone:
        fields["backbone"] = args.backbone
    if args.steps_per_epoch:
        fields["steps_per_epoch"] = args.steps_per_epoch
    known = set(TrainConfig.__dataclass_fields__)
    for key, value in args.train_option:
        if key not in known:
            raise ValueError(f"--train-option {key} is not a visnet.train setting. Settings: {', '.join(sorted(known))}")
        fields[key] = value
    if args.val == "none":
        raise ValueError("--val none leaves nothing to score trials on: carve validation classes (classes:0.1).")
    return TrainConfig(**fields).validate()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    began = time.perf_counter()
    try:
        if args.epochs < 1:
            raise ValueError(f"--epochs must be >= 1. Received: {args.epochs}")
        fixed = read_space(args.space) if args.space else {}
        fixed.update(dict(args.fixed))
        from tuning.report import active_values, plot_objective, trial_rows, write_tables
        from tuning.tuner import VisnetHyperModel, make_tuner

        base = base_config(args)
        hypermodel = VisnetHyperModel(base, fixed)
        os.makedirs(args.out, exist_ok=True)
        if args.overwrite:  # KerasTuner clears its own folder; the defaults and best runs go too
            for name in ("defaults", "best-run"):
                shutil.rmtree(os.path.join(args.out, name), ignore_errors=True)
        tuner = make_tuner(args.tuner, hypermodel, args.objective, args.max_trials, args.out, args.seed,
                           args.overwrite, args.progress)
        done = sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
        if done:
            print(f"resuming {args.out}: {done} finished trial(s) kept", file=sys.stderr)
        tuner.search()
        rows = trial_rows(tuner)
        best_dir = tuner.best_run()
        target = os.path.join(args.out, "best-run")
        if os.path.exists(target):
            shutil.rmtree(target)
        shutil.copytree(best_dir, target)
        best = tuner.oracle.get_best_trials(1)[0]
        defaults = None
        if args.compare_defaults:
            defaults = train_defaults(base, os.path.join(args.out, "defaults"), args.objective)
        write_tables(rows, args.objective, args.out)
        plot_objective(rows, args.objective, os.path.join(args.out, "objective.png"),
                       None if defaults is None else defaults["objective"])
        summary = {"arch": args.arch, "tuner": args.tuner, "objective": args.objective, "data": args.data,
                   "trials": len(rows), "best_trial": best.trial_id, "best_score": best.score,
                   "best_hyperparameters": active_values(best.hyperparameters),
                   "defaults": defaults, "fixed": fixed, "wall_seconds": round(time.perf_counter() - began, 1),
                   "command": "python -m tuning.search " + " ".join(argv if argv is not None else sys.argv[1:])}
        with open(os.path.join(args.out, "search.json"), "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2, default=str)
    except (ValueError, TypeError, OSError, KeyError, ImportError) as error:
        return report_error(error)
    print(open(os.path.join(args.out, "results.md"), encoding="utf-8").read())
    line = f"best: trial {best.trial_id}, {args.objective} {best.score:.4f}"
    if defaults is not None:
        line += f" (defaults: {defaults['objective']:.4f})"
    print(f"{line}; run copied to {target}; {len(rows)} trials in {summary['wall_seconds']:.0f} s")
    return 0


def train_defaults(base, out: str, objective: str) -> dict:
    """Trains the untuned configuration (once; kept on resume) and returns its best objective."""
    import copy

    from visnet.training.trainer import train

    config = copy.deepcopy(base)
    config.out = out
    state = os.path.join(out, "state.json")
    if not os.path.exists(state) or json.load(open(state, encoding="utf-8"))["epochs_done"] < config.epochs:
        train(config, resume=os.path.exists(state), progress=False, log=lambda message: None)
    history = json.load(open(state, encoding="utf-8"))["history"]
    return {"objective": max(epoch[objective] for epoch in history), "epochs": len(history), "run": out}


if __name__ == "__main__":
    sys.exit(main())
