"""A small KerasTuner search against the default hyperparameters, on the open-set protocol.

Runs `python -m tuning.search` (validation classes carved from the base classes, never the
novel ones; `--compare-defaults` trains the untuned configuration the same way), then measures
the best trial's run and the defaults run on the 16 novel classes with `python -m
visnet.evaluate` (open-set mAP, R@1, 5-way 1-shot). Writes results/tuning_search.{json,md}.

    python benchmarks/tuning_search.py --data ../shared/data/fashion-products --arch siamese --max-trials 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import header, write_report  # noqa: E402

#: Small trials that fit a 2-core machine: a narrow ResNet-18 at 64x48, 40 batches per epoch.
TRIAL = ["--image-size", "64x48", "--backbone", "resnet18", "--backbone-option", "width=16",
         "--steps-per-epoch", "40", "--epochs", "3"]


def evaluate(run: str, data: str, out: str) -> dict:
    subprocess.run([sys.executable, "-m", "visnet.evaluate", "--run", run, "--data", data, "--classifiers",
                    "prototype", "--shots", "1", "--ways", "5", "--out", out, "--no-progress"], check=True,
                   stdout=subprocess.DEVNULL)
    results = json.load(open(out))
    open_set = results["open_set"]
    fewshot = results["few_shot"][0]
    return {"mAP": open_set["mAP"], "recall@1": open_set["recall"]["1"], "5w1s": fewshot["accuracy"]}


def markdown(report: dict) -> str:
    s, r = report["settings"], report["results"]
    lines = [
        f"### Hyperparameter search: {s['arch']}, {s['tuner']} search of {s['max_trials']} trials against the defaults",
        "",
        f"Command: `{report['command']}`  ",
        f"Trials: `{' '.join(s['trial_settings'])}`; objective `val_mAP` on 10% of the base classes held out "
        f"for validation; test figures on the 16 novel classes. Wall time {report['wall_seconds'] / 60:.0f} min "
        f"on {report['machine']['cpus']} CPUs (search {r['search_seconds'] / 60:.0f} min).",
        "",
        "| configuration | val_mAP (base-class validation) | novel mAP | novel R@1 | novel 5-way 1-shot |",
        "|---|---|---|---|---|",
    ]
    for name in ("defaults", "best trial"):
        row = r[name]
        lines.append(f"| {name} | {row['val_mAP']:.3f} | {row['mAP']:.3f} | {row['recall@1']:.3f} | "
                     f"{100 * row['5w1s']:.1f}% |")
    lines += ["", f"Best hyperparameters: `{json.dumps(r['best_hyperparameters'])}`", "", "Trials:", "",
              r["table"].strip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--arch", default="siamese")
    parser.add_argument("--tuner", default="random")
    parser.add_argument("--max-trials", type=int, default=8)
    parser.add_argument("--search-dir", default=os.path.join(HERE, "runs", "tuning"))
    parser.add_argument("--out", default=os.path.join(HERE, "results", "tuning_search"))
    args = parser.parse_args(argv)

    began = time.perf_counter()
    command = [sys.executable, "-m", "tuning.search", "--arch", args.arch, "--data", args.data, "--out",
               args.search_dir, "--tuner", args.tuner, "--max-trials", str(args.max_trials), "--compare-defaults",
               "--overwrite", *TRIAL]
    subprocess.run(command, check=True)
    search_seconds = time.perf_counter() - began
    summary = json.load(open(os.path.join(args.search_dir, "search.json")))
    defaults = evaluate(summary["defaults"]["run"], args.data, os.path.join(args.search_dir, "defaults-eval.json"))
    best = evaluate(os.path.join(args.search_dir, "best-run"), args.data,
                    os.path.join(args.search_dir, "best-eval.json"))
    report = {
        **header("tuning_search", "benchmarks/tuning_search.py", argv if argv is not None else sys.argv[1:],
                 ("keras-tuner",)),
        "settings": {"arch": args.arch, "tuner": args.tuner, "max_trials": args.max_trials, "trial_settings": TRIAL},
        "wall_seconds": round(time.perf_counter() - began, 1),
        "results": {"search_seconds": round(search_seconds, 1),
                    "defaults": {"val_mAP": summary["defaults"]["objective"], **defaults},
                    "best trial": {"val_mAP": summary["best_score"], **best},
                    "best_hyperparameters": summary["best_hyperparameters"],
                    "table": open(os.path.join(args.search_dir, "results.md")).read()},
    }
    write_report(report, args.out, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
