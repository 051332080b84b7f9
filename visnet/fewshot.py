"""N-way K-shot accuracy grid of an embedding on the novel classes, as a heatmap and a table:
`python -m visnet.fewshot --run runs/x --data PATH --ways 5,10,16 --shots 1,5,10 --classifier prototype --out fewshot/x`.

Embeds the protocol's novel-class pool once (or, with several `--run`, once per run), then
runs seeded episodes (the same episodes for every cell's classifier) for each ways x shots
cell. Writes OUT.csv (ways, shots, classifier, accuracy, 95% interval, episodes), OUT.png (the
heatmap) and OUT.json (everything, with the settings). `--classifier ensemble` votes over
`--members` (soft or hard `--voting`); given several `--run`, each member runs on each run's
embedding (voting over runs).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from visnet.cli import (
    add_imagenet_classes,
    check_grid_args,
    int_list,
    key_value,
    name_list,
    report_error,
)
from visnet.data.image_spec import parse_size
from visnet.data.validation import CHECK_MODES


def build_parser() -> argparse.ArgumentParser:
    from visnet.baselines import embedders
    from visnet.evaluation.distances import METRICS
    from visnet.evaluation.fewshot import VOTINGS, classifiers

    parser = argparse.ArgumentParser(prog="python -m visnet.fewshot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset as LAYOUT:PATH or a path (layout detected)")
    parser.add_argument("--run", action="append", default=[], help="a run directory (repeatable: vote over runs "
                                                                  "with --classifier ensemble)")
    parser.add_argument("--embedder", default="hog", help=f"without --run: {', '.join(embedders.names())} (default hog)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of --run")
    parser.add_argument("--embedder-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="embedder option, repeatable")
    parser.add_argument("--image-size", type=parse_size, metavar="HxW", help="input size of --embedder, or of --run (the trained model rebuilt at that size)")
    add_imagenet_classes(parser)
    parser.add_argument("--protocol", help="protocol JSON (default: the data folder's protocol.json)")
    parser.add_argument("--label", help="label column for the reader")
    parser.add_argument("--ways", type=int_list, default=(5, 10, 16), metavar="N,N", help="ways (default 5,10,16)")
    parser.add_argument("--shots", type=int_list, default=(1, 5, 10), metavar="K,K", help="shots (default 1,5,10)")
    parser.add_argument("--queries", type=int, default=15, help="queries per class and episode (default 15)")
    parser.add_argument("--episodes", type=int, default=600, help="episodes per cell (default 600)")
    parser.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    parser.add_argument("--classifier", default="prototype",
                        help=f"classifier: {', '.join(classifiers.names())} (default prototype)")
    parser.add_argument("--members", type=name_list, default=("prototype", "1nn", "mlp"), metavar="NAME,NAME",
                        help="members of --classifier ensemble (default prototype,1nn,mlp)")
    parser.add_argument("--voting", choices=VOTINGS, default="soft", help="ensemble voting (default soft)")
    parser.add_argument("--metric", choices=METRICS, default="euclidean", help="distance (default euclidean)")
    parser.add_argument("--batch-size", type=int, default=64, help="embedding batch size (default 64)")
    parser.add_argument("--check-images", choices=CHECK_MODES, default="decode", help="image check (default decode)")
    parser.add_argument("--out", required=True, help="output prefix: writes OUT.csv, OUT.png and OUT.json")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def classifier_config(args, blocks: list[tuple[int, int]]):
    """The classifier: a name, or an ensemble whose members run on each embedding block."""
    from visnet.evaluation.fewshot import classifiers

    classifiers.lookup(args.classifier)
    for name in args.members:
        classifiers.lookup(name)
    if args.classifier != "ensemble":
        if len(blocks) > 1:
            raise ValueError(f"{len(blocks)} --run given: voting over runs needs --classifier ensemble.")
        return args.classifier
    members = [{"name": name, "columns": list(block)} if len(blocks) > 1 else name
               for block in blocks for name in args.members]
    return {"name": "ensemble", "members": members, "voting": args.voting}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    began = time.perf_counter()
    try:
        check_grid_args(args)
        from visnet.evaluate import load_data, load_protocol, make_embedder
        from visnet.evaluation.benchmark import embed_pool
        from visnet.evaluation.fewshot import accuracy_grid, format_cell, pool_size, save_grid

        classifier_config(args, [(0, 1)])  # names checked before any image is read
        protocol = load_protocol(args)
        args.hog_weight = None
        made = [make_embedder(args, run, protocol) for run in (args.run or [None])]
        dataset, protocol = load_data(args, protocol)
        parts, labels, names = [], None, []
        for embedder, _ in made:
            x, y = embed_pool(embedder, dataset, protocol, args.batch_size, not args.no_progress)
            if labels is not None and not np.array_equal(labels, y):
                raise ValueError("The runs embedded different pool images; they cannot vote together.")
            parts.append(x)
            labels = y
            names.append(embedder.get_config()["name"])
        widths = np.cumsum([0] + [p.shape[1] for p in parts])
        x = np.concatenate(parts, axis=1)
        classifier = classifier_config(args, list(zip(widths[:-1].tolist(), widths[1:].tolist())))
        rows = accuracy_grid(x, labels, args.ways, args.shots, args.queries, args.episodes, args.seed, classifier,
                             args.metric, progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr))
        label = args.classifier if args.classifier != "ensemble" else f"{args.voting} ensemble of {'+'.join(args.members)}"
        pool = pool_size(labels)
        title = f"{' + '.join(names)}: {label}, {args.episodes} episodes, {pool['classes']} novel classes"
        seconds = round(time.perf_counter() - began, 1)
        save_grid(args.out, rows, {"embedders": names, "classifier": classifier, "data": args.data,
                                   "protocol": protocol.name, "pool": pool, "seed": args.seed, "seconds": seconds},
                  title)
    except (ValueError, TypeError, OSError, RuntimeError, KeyError) as error:
        return report_error(error)
    for row in rows:
        print(f"{row['ways']:>3}-way {row['shots']:>2}-shot  {format_cell(row)}")
    print(f"wrote {args.out}.csv, {args.out}.png, {args.out}.json in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
