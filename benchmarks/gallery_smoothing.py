"""Gallery smoothing for closed-set k-NN, with k chosen on the run's own validation photos.

`visnet.evaluate --gallery-smoothing K` replaces each closed-set training photo by the mean of
itself and its K nearest training photos of the same label before k-NN. This script chooses K
without the test split: the run's validation photos (held out of its training by `--val`) are
classified against the rest of the training split, smoothed with each K of the grid; the K with
the best validation 1-NN is the choice (`classification.choose_smoothing`, which
`visnet.evaluate --gallery-smoothing auto` uses too). Then every K is measured on the test split (against the
whole training split, as `visnet.evaluate` does), so the table shows the choice and what the
others would have given. `--run PATH+PATH` measures several closed-set runs as one model
(`visnet.training.runs.RunEnsemble`); they must hold out the same validation photos, or K would
be chosen on photos a member trained on.

    python benchmarks/gallery_smoothing.py --data ../shared/data/fashion-products \\
        --run benchmarks/runs/effnet-closed-224-20ep --image-size 288x216
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from benchmarks.common import header, host, write_report  # noqa: E402
from visnet.cli import int_list, size  # noqa: E402
from visnet.evaluation.classification import SMOOTHING_GRID  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset folder with protocol.json")
    parser.add_argument("--run", required=True, help="a closed-set run (trained with --split closed-set and --val), or PATH+PATH: "
                             "several as one model, with the same validation photos")
    parser.add_argument("--image-size", type=size, metavar="HxW", help="run the model at this size (default its own)")
    parser.add_argument("--grid", type=lambda text: int_list(text, minimum=0), default=SMOOTHING_GRID, metavar="K,K",
                        help=f"values of K to try (default {','.join(map(str, SMOOTHING_GRID))}; 0 is no smoothing)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "gallery_smoothing"),
                        help="report path without extension (default benchmarks/results/gallery_smoothing)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from visnet.data.protocol import Protocol
    from visnet.data.readers import load_dataset
    from visnet.evaluation.classification import (
        choose_smoothing,
        held_out_mask,
        knn_accuracy,
        smooth_gallery,
    )
    from visnet.evaluation.embedding import embed_dataset
    from visnet.training.runs import Run, held_out_ids, open_run

    report = header("gallery_smoothing", "benchmarks/gallery_smoothing.py", sys.argv[1:] if argv is None else argv)
    paths = args.run.split("+")
    if not all(paths):
        parser.error(f"--run takes PATH or PATH+PATH, with no empty part. Received: {args.run!r}")
    try:
        held_out = held_out_ids(paths)
    except ValueError as error:
        parser.error(str(error))
    runs = [Run(path) for path in paths]
    protocol = Protocol.load(os.path.join(args.data, "protocol.json"))
    train, test = protocol.closed_set(load_dataset(args.data, check="none"), missing="skip")
    embedder = open_run(paths).embedder("best", image_size=args.image_size)
    start = time.perf_counter()
    train, train_x = embed_dataset(embedder, train, progress=False)
    test, test_x = embed_dataset(embedder, test, progress=False)
    embed_seconds = time.perf_counter() - start
    train_y, test_y = np.array([r.label for r in train]), np.array([r.label for r in test])
    try:
        is_val = held_out_mask([r.id for r in train], held_out)
    except ValueError as error:
        parser.error(f"{error} ({args.data})")
    chosen, rows = choose_smoothing(train_x, train_y, is_val, args.grid)
    for row in rows:  # what each K would give on the test split, against the whole training split
        tested = knn_accuracy(smooth_gallery(train_x, train_y, row["k"]), train_y, test_x, test_y, ks=(1,))[1]
        row.update(test_1nn=tested, test_mistakes=int(round((1 - tested) * len(test_y))))
    size_text = "x".join(map(str, args.image_size)) if args.image_size else "x".join(map(str, runs[0].config.image_size))
    name = "+".join(os.path.basename(os.path.normpath(path)) for path in paths)
    report.update({"data": args.data, "run": name, "image_size": size_text,
                   "validation_photos": int(is_val.sum()), "train_photos": len(train_y), "test_photos": len(test_y),
                   "rows": rows, "chosen_k": chosen, "embed_seconds": round(embed_seconds, 1)})
    write_report(report, args.out, markdown)
    return 0


def markdown(r: dict) -> str:
    owner = "runs' " if "+" in r["run"] else "run's "  # several runs as one model hold out the same photos
    lines = [f"### Gallery smoothing for closed-set 1-NN: `{r['run']}` at {r['image_size']}", "",
             f"Command: `{r['command']}` — embedding {r['embed_seconds'] / 60:.1f} min, {host(r.get('machine', {}))}. "
             f"K chosen on the {owner}{r['validation_photos']} validation photos against the rest of the training "
             f"split (a tie goes to the smaller K); test: {r['test_photos']} photos against all "
             f"{r['train_photos']} training photos (`visnet.evaluate --gallery-smoothing K`).", "",
             "| K (same-label neighbours averaged) | validation 1-NN | test 1-NN | test mistakes |", "|---|---|---|---|"]
    for row in r["rows"]:
        mark = " (chosen)" if row["k"] == r["chosen_k"] else ""
        k = "0 (none)" if row["k"] == 0 else str(row["k"])
        lines.append(f"| {k}{mark} | {100 * row['validation_1nn']:.1f}% | {100 * row['test_1nn']:.1f}% | "
                     f"{row['test_mistakes']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
