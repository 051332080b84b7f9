"""Transductive few-shot (soft k-means prototypes) against nearest prototype on the open-set
protocol, its two settings chosen on classes no model saw.

For each trained run: its own validation classes (held out of its training, from the base
classes) give seeded 5-way 1-shot and 5-way 5-shot episodes (15 queries per class, classes with
too few photos left out); every setting of the grid (iterations x temperature,
`visnet.evaluation.fewshot.SoftKMeans`) is measured there, and the best one by the mean of the
two cells is then applied once to the protocol's novel-class pool, on the same episodes
`python -m visnet.evaluate` draws. `iterations=0` is nearest prototype. The best setting on
the novel classes themselves is listed too, marked: it is what choosing on the test set would
claim.
A run trained on every base class (`val none`) has no validation classes: `--chosen-by
NAME=OTHER` gives it the setting chosen for the run named OTHER (its recipe with classes held out).

    python benchmarks/transductive.py --data ../shared/data/fashion-products \\
        --run effnet-photo-288=benchmarks/runs/effnet-photo-288@352x264
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import (  # noqa: E402
    add_run_arguments,
    chosen_on,
    commands_text,
    earlier_report,
    embed_for_choice,
    header,
    merge_report,
    model_name,
    parse_chosen_by,
    parse_imagenet_classes,
    parse_runs,
    write_report,
)

ITERATIONS = (0, 1, 2, 3, 5, 10)
TEMPERATURES = (2.0, 5.0, 10.0, 20.0, 40.0)
#: Validation cells: 5-way, 1 and 5 shots.
VALIDATION_WAYS, VALIDATION_SHOTS = (5,), (1, 5)


def grid() -> list[dict]:
    """Classifier configs: nearest prototype (`iterations=0`) first, then every soft k-means setting."""
    return [{"name": "soft-kmeans", "iterations": 0, "temperature": TEMPERATURES[0]}] + [
        {"name": "soft-kmeans", "iterations": i, "temperature": t} for i in ITERATIONS if i for t in TEMPERATURES]


def setting(config: dict) -> str:
    return "prototype" if config["iterations"] == 0 else f"iterations={config['iterations']},temperature={config['temperature']:g}"


def cells(x, y, config, ways, shots, queries, episodes, seed) -> dict:
    """Accuracy per "N-way K-shot" cell of ways x shots; None where the photos cannot fill its episodes."""
    from visnet.evaluation.fewshot import accuracy_grid

    rows = accuracy_grid(x, y, ways, shots, queries, episodes, seed, config)
    return {f"{row['ways']}-way {row['shots']}-shot": row["accuracy"] for row in rows}


def score(accuracies: dict) -> float:
    """The mean over the cells that could be drawn."""
    drawn = [a for a in accuracies.values() if a is not None]
    return float(np.mean(drawn)) if drawn else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser, os.path.join(HERE, "results", "transductive"))
    parser.add_argument("--episodes", type=int, default=600, help="episodes per cell (default 600, the protocol's)")
    parser.add_argument("--queries", type=int, help="query photos per class and episode (default: the protocol's, 15)")
    args = parser.parse_args(argv)
    for flag in ("episodes", "queries"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag} must be >= 1. Received: {value}")
    runs = parse_runs(parser, args.run, args.image_size)
    merged_into = earlier_report(args)
    earlier = merged_into["rows"] if merged_into else []
    sources = parse_chosen_by(parser, args.chosen_by, runs, earlier)
    classes = parse_imagenet_classes(parser, args.imagenet_classes, runs)

    from visnet.data.protocol import Protocol
    from visnet.data.readers import load_dataset
    from visnet.evaluation.benchmark import embed_pool

    began = time.perf_counter()
    protocol = Protocol.load(os.path.join(args.data, "protocol.json"))
    dataset = load_dataset(args.data, check="none")
    episodes = protocol.episodes
    queries, seed = args.queries or episodes.queries_per_class, episodes.seed
    settings = grid()
    by_name = {setting(c): c for c in settings}
    rows = []
    for name, path, image_size in runs:
        embedder, source, val_x, val_y = embed_for_choice(parser, earlier + rows, sources, name, path, image_size,
                                                                    classes.get(name))
        pool_x, pool_y = embed_pool(embedder, dataset, protocol, progress=False)
        start = time.perf_counter()
        if source:  # no validation classes of its own: another run's choice
            validation, val_classes, val_images = source["validation"], source["val_classes"], source["val_images"]
        else:
            validation = {setting(c): cells(val_x, val_y, c, VALIDATION_WAYS, VALIDATION_SHOTS, queries,
                                            args.episodes, seed) for c in settings}
            if all(a is None for a in validation["prototype"].values()):
                parser.error(f"the run {path}'s validation classes cannot fill a 5-way episode with {queries} "
                             "queries per class: nothing to choose settings on (try a smaller --queries)")
            val_classes, val_images = sorted(set(val_y.tolist())), len(val_y)
        novel = {setting(c): cells(pool_x, pool_y, c, episodes.ways, episodes.shots, queries, args.episodes, seed)
                 for c in settings}
        grid_seconds = time.perf_counter() - start
        chosen = (by_name[source["chosen"]] if source
                  else max(settings, key=lambda c: (score(validation[setting(c)]), -settings.index(c))))
        oracle = max(settings, key=lambda c: (score(novel[setting(c)]), -settings.index(c)))
        rows.append({"name": name, "run": path,
                     "imagenet_classes": classes[name].to_dict() if name in classes else None, "image_size": [embedder.image_spec.height, embedder.image_spec.width],
                     "val_classes": val_classes, "val_images": val_images, "pool_images": len(pool_y),
                     "chosen_by": sources.get(name), "chosen": setting(chosen), "oracle": setting(oracle),
                     "validation": validation, "novel": novel, "grid_seconds": round(grid_seconds, 1)})
        print(f"{name}: prototype {novel['prototype']}, {setting(chosen)} {novel[setting(chosen)]}", file=sys.stderr)
    report = {**header("transductive", "benchmarks/transductive.py", argv if argv is not None else sys.argv[1:]),
              "data": args.data, "protocol": protocol.name, "episodes": args.episodes, "queries_per_class": queries,
              "grid": {"iterations": ITERATIONS, "temperature": TEMPERATURES}, "rows": rows,
              "wall_seconds": round(time.perf_counter() - began, 1)}
    if args.merge:
        report = merge_report(report, merged_into)
    write_report(report, args.out, markdown)
    return 0


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def markdown(report: dict) -> str:
    grid_ = report["grid"]
    lines = ["### Transductive few-shot: soft k-means prototypes, chosen on held-out classes", "",
             f"{commands_text(report)}. "
             f"Settings: iterations in {list(grid_['iterations'])}, temperature in {list(grid_['temperature'])}, "
             "chosen by the mean of 5-way 1-shot and 5-way 5-shot accuracy on each run's validation classes (held "
             "out of its training), or for a run trained on every base class, on those of the run named in \"chosen "
             f"on\" (the same recipe with validation classes held out); figures on the 16 novel classes' pool, {report['episodes']} seeded episodes, "
             f"{report['queries_per_class']} queries per class classified together (n/a: too few photos for the cell).", ""]
    for row in report["rows"]:
        columns = list(next(iter(row["novel"].values())))
        lines += [f"**{model_name(row)}** at {row['image_size'][0]}x{row['image_size'][1]}", "",
                  "| classifier | chosen on | val 5-way 1-shot | val 5-way 5-shot | " + " | ".join(columns) + " |",
                  "|---|---|---|---|" + "---|" * len(columns)]
        for label, key, where in (("nearest prototype (inductive)", "prototype", "–"),
                                  ("soft k-means (transductive)", row["chosen"], chosen_on(row)),
                                  ("best on the novel classes (not a fair figure)", row["oracle"], "test")):
            v, n = row["validation"][key], row["novel"][key]
            lines.append(f"| {label}: `{key}` | {where} | " + " | ".join(_pct(a) for a in v.values()) + " | "
                         + " | ".join(_pct(n[c]) for c in columns) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
