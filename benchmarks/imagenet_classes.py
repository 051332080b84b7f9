"""The ImageNet class embedding beside a fine-tuned one, its share chosen on classes no model saw.

For each trained run: the run's embedding and the ImageNet class embedding of the offline
EfficientNet-Lite0 trunk (`visnet.models.imagenet_classes`: the square roots of its 1,000 class
probabilities, the classifier seeing the photo resized to `--class-size`) are computed once, on
the run's own validation classes (held out of its training, from the base classes) and on the
protocol's 16 novel classes. Every share of the grid is measured on both; the share with the best
validation mAP (half of each validation class's photos as support, half as queries, seeded) is the
one chosen, and its novel-class figures are the ones to read: open-set mAP and Recall@K (each query
against the support images) and the N-way K-shot table (nearest prototype, the protocol's seeded
episodes), exactly as `python -m visnet.evaluate --run R --imagenet-share S --imagenet-size HxW`
measures. Share 0 is the run alone, share 1 the class embedding alone. The best share on the novel
classes themselves is listed too, marked: it is what choosing on the test set would claim.
A run trained on every base class (`val none`), or several runs as one model (PATH+PATH), takes
the share chosen for another run (`--chosen-by NAME=OTHER`).

    python benchmarks/imagenet_classes.py --data ../shared/data/fashion-products \\
        --run effnet-photo-288=benchmarks/runs/effnet-photo-288@352x264 --class-size 288x216
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
    header,
    merge_report,
    parse_chosen_by,
    parse_runs,
    write_report,
)

#: Shares of the squared distance given to the class embedding; 0 is the run alone, 1 the classes alone.
SHARES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 1.0)


def fused(learned: np.ndarray, classes: np.ndarray, share: float) -> np.ndarray:
    """The embedding `visnet.models.imagenet_classes.with_imagenet_classes` gives, from the two parts (share 0 or 1: one part)."""
    from visnet.models.imagenet_classes import fuse_arrays

    unit = lambda v: (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    if share == 0.0:
        return unit(learned)
    if share == 1.0:
        return unit(classes)
    return fuse_arrays(learned, classes, share)


def two_part_embedder(run_path: str, image_size, class_size):
    """(predict: images -> [run embeddings, class embeddings], the run's ImageSpec at `image_size`);
    `run_path` may join several runs with `+` (one model, `visnet.training.runs.open_run`)."""
    import keras

    from visnet.models.imagenet_classes import ImageNetClasses, class_branch
    from visnet.training.runs import open_run

    embedder = open_run(run_path.split("+")).embedder("best", image_size=image_size)
    # The share does not matter here: only the class branch is built, the parts are joined later.
    inputs, classes = class_branch(tuple(embedder.model.inputs[0].shape[1:]), ImageNetClasses(0.5, class_size),
                                   embedder.image_spec.normalization)
    model = keras.Model(inputs, [embedder.model(inputs), classes])
    return (lambda images: model.predict_on_batch(images)), embedder.image_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser, os.path.join(HERE, "results", "imagenet_classes"), imagenet_classes=False)
    from visnet.cli import size

    parser.add_argument("--class-size", type=size, metavar="HxW",
                        help="the input size the ImageNet classifier sees, each photo resized inside the model "
                             "(default: the run's input size)")
    parser.add_argument("--episodes", type=int, default=600, help="episodes per few-shot cell (default 600, the "
                                                                    "protocol's)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1. Received: {args.episodes}")
    runs = parse_runs(parser, args.run, args.image_size)
    merged_into = earlier_report(args)
    earlier = merged_into["rows"] if merged_into else []
    sources = parse_chosen_by(parser, args.chosen_by, runs, earlier)
    for name, path, _ in runs:
        if "+" in path and name not in sources:
            parser.error(f"the runs {path} as one model have no validation classes of their own: nothing to "
                         "choose the share on (--chosen-by NAME=OTHER takes another run's)")

    from benchmarks.reranking import half_split, measure
    from benchmarks.transductive import cells
    from visnet.data.protocol import Protocol
    from visnet.data.readers import load_dataset
    from visnet.evaluation.embedding import embed_parts
    from visnet.index.expansion import Expansion
    from visnet.training.data import read_training_data
    from visnet.training.runs import Run

    began = time.perf_counter()
    protocol = Protocol.load(os.path.join(args.data, "protocol.json"))
    dataset = load_dataset(args.data, check="none")
    episodes = protocol.episodes
    pool_ids = [i for ids in protocol.novel_pool.values() for i in ids]
    known = set(dataset.ids)
    novel_ids = list(dict.fromkeys([*protocol.support_ids, *protocol.query_ids, *pool_ids]))
    novel_records = dataset.select([i for i in novel_ids if i in known], "novel classes")
    rows = []
    for name, path, image_size in runs:
        source = None
        if name in sources:
            source = [row for row in earlier + rows if row["name"] == sources[name]][-1]
        val = None
        if source is None:
            val = read_training_data(Run(path).config, progress=False).val
            if val is None:
                parser.error(f"the run {path} has no validation classes (val=none): nothing to choose the share on "
                             "(--chosen-by NAME=OTHER takes another run's)")
        predict, spec = two_part_embedder(path, image_size, args.class_size)
        start = time.perf_counter()
        kept, (learned, classes) = embed_parts(predict, novel_records, spec, progress=False,
                                               description=f"{name} novel classes")
        embed_seconds = time.perf_counter() - start
        rows_of = {record.id: i for i, record in enumerate(kept)}
        index = {what: [rows_of[i] for i in ids if i in rows_of] for what, ids in
                 (("query", protocol.query_ids), ("support", protocol.support_ids), ("pool", pool_ids))}
        labels = np.array(kept.labels)

        validation = source["validation"] if source else {}
        if source is None:
            val_kept, (val_learned, val_classes) = embed_parts(predict, val, spec, progress=False,
                                                               description=f"{name} validation")
            val_labels = np.array(val_kept.labels)
            support = half_split(val_labels)
        novel = {}
        for share in SHARES:
            key = f"{share:g}"
            if source is None:
                v = fused(val_learned, val_classes, share)
                validation[key] = measure(v[~support], val_labels[~support], v[support], val_labels[support],
                                          Expansion())["mAP"]
            x = fused(learned, classes, share)
            q, g, pool = index["query"], index["support"], index["pool"]
            novel[key] = {**measure(x[q], labels[q], x[g], labels[g], Expansion()),
                          **cells(x[pool], labels[pool], "prototype", episodes.ways, episodes.shots,
                                  episodes.queries_per_class, args.episodes, episodes.seed)}
        keys = [f"{share:g}" for share in SHARES]
        chosen = source["chosen"] if source else max(keys, key=lambda k: (validation[k], -keys.index(k)))
        oracle = max(keys, key=lambda k: (novel[k]["mAP"], -keys.index(k)))
        rows.append({"name": name, "run": path, "image_size": [spec.height, spec.width],
                     "class_size": list(args.class_size) if args.class_size else [spec.height, spec.width],
                     "chosen_by": sources.get(name), "chosen": chosen, "oracle": oracle,
                     "val_classes": source["val_classes"] if source else sorted(set(val_labels.tolist())),
                     "val_images": source["val_images"] if source else len(val_labels),
                     "validation": validation, "novel": novel, "novel_images": len(kept),
                     "embedding_images_per_second": round(len(kept) / embed_seconds, 1)})
        print(f"{name}: alone {novel['0']['mAP']:.3f}, share {chosen} {novel[chosen]['mAP']:.3f}", file=sys.stderr)
    report = {**header("imagenet_classes", "benchmarks/imagenet_classes.py", argv if argv is not None else sys.argv[1:]),
              "data": args.data, "protocol": protocol.name, "shares": list(SHARES), "episodes": args.episodes,
              "rows": rows, "wall_seconds": round(time.perf_counter() - began, 1)}
    if args.merge:
        report = merge_report(report, merged_into)
    write_report(report, args.out, markdown)
    return 0


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def markdown(report: dict) -> str:
    lines = ["### ImageNet classes beside the embedding: the share chosen on held-out classes", "",
             f"{commands_text(report)}. Shares of the squared distance given to the ImageNet class embedding: "
             f"{', '.join(f'{s:g}' for s in report['shares'])} (0: the run alone; 1: the class embedding alone), "
             "chosen by mAP on each run's validation classes (held out of its training; half of each class's photos "
             "as support, half as queries), or for a run trained on every base class, on those of the run named in "
             "\"chosen on\"; figures on the 16 novel classes: retrieval of each query against the support images, "
             f"and nearest-prototype N-way K-shot accuracy on the protocol's {report['episodes']} seeded episodes.",
             ""]
    for row in report["rows"]:
        cells_ = [c for c in next(iter(row["novel"].values())) if "way" in c]
        lines += [f"**{row['name']}** at {row['image_size'][0]}x{row['image_size'][1]}, the ImageNet classifier at "
                  f"{row['class_size'][0]}x{row['class_size'][1]}", "",
                  "| embedding | share | chosen on | val mAP | mAP | R@1 | R@5 | " + " | ".join(cells_) + " |",
                  "|---|---|---|---|---|---|---|" + "---|" * len(cells_)]
        for label, key, where in (("the run alone", "0", "–"), ("ImageNet classes alone", "1", "–"),
                                  ("side by side", row["chosen"], chosen_on(row)),
                                  ("best on the novel classes (not a fair figure)", row["oracle"], "test")):
            n = row["novel"][key]
            lines.append(f"| {label} | {key} | {where} | {row['validation'][key]:.3f} | {n['mAP']:.3f} | "
                         f"{n['R@1']:.3f} | {n['R@5']:.3f} | " + " | ".join(_pct(n[c]) for c in cells_) + " |")
        by_share = ", ".join(f"{k}: {row['validation'][k]:.3f} → {row['novel'][k]['mAP']:.3f}" for k in row["novel"])
        lines += ["", f"By share (validation mAP → novel mAP): {by_share}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
