"""Re-ranking without training: query expansion (QE) and database-side augmentation (DBA) on the
open-set protocol, their settings chosen on classes no model saw.

For each trained run: its own validation classes (held out of its training, from the base
classes) are split per class into half "support", half "query" images (seeded); every setting
of the grid (qe x dba x alpha, `visnet.index.expansion.Expansion`) is measured there, and the
best one by validation mAP (over all settings, and over query expansion alone) is then applied
once to the 16 novel classes of the protocol: each query image against the support images,
exactly as `python -m visnet.evaluate --expansion ...` measures. The best setting on the novel
classes themselves is listed too, marked: it is what choosing on the test set would claim.
A run trained on every base class (`val none`) has no validation classes: `--chosen-by
NAME=OTHER` gives it the setting chosen for the run named OTHER (its recipe with classes held out).

    python benchmarks/reranking.py --data ../shared/data/fashion-products \\
        --run effnet-siamese=benchmarks/runs/effnet-siamese --image-size 224x168 \\
        --run effnet-photo-224=benchmarks/runs/effnet-photo-224@288x216
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

QE = (0, 1, 2, 3, 5, 10)
DBA = (0, 2, 3, 4, 6, 11)
ALPHA = (0.0, 3.0)


def half_split(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A boolean mask: the first half (rounded up) of each class's images, in a seeded order, is support."""
    rng = np.random.default_rng(seed)
    support = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        support[members[: (len(members) + 1) // 2]] = True
    return support


def measure(queries, query_labels, gallery, gallery_labels, expansion) -> dict:
    from visnet.evaluation.retrieval import retrieval_metrics

    q, g = expansion.apply(queries, gallery)
    r = retrieval_metrics(q, query_labels, g, gallery_labels, (1, 5))
    return {"mAP": r.mean_average_precision, "R@1": r.recall[1], "R@5": r.recall[5]}


def grid() -> list:
    from visnet.index.expansion import Expansion

    return [Expansion(qe, dba, alpha) for qe in QE for dba in DBA for alpha in ALPHA
            if (qe or dba) or alpha == 0.0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser, os.path.join(HERE, "results", "reranking"))
    args = parser.parse_args(argv)
    runs = parse_runs(parser, args.run, args.image_size)
    merged_into = earlier_report(args)
    earlier = merged_into["rows"] if merged_into else []
    sources = parse_chosen_by(parser, args.chosen_by, runs, earlier)
    classes = parse_imagenet_classes(parser, args.imagenet_classes, runs)

    from visnet.data.protocol import Protocol
    from visnet.data.readers import load_dataset
    from visnet.evaluation.embedding import embed_dataset

    began = time.perf_counter()
    protocol = Protocol.load(os.path.join(args.data, "protocol.json"))
    dataset = load_dataset(args.data, check="none")
    split = protocol.open_set(dataset, missing="skip")
    settings = grid()
    by_name = {str(e): e for e in settings}
    rows = []
    for name, path, image_size in runs:
        embedder, source, val_vectors, val_labels = embed_for_choice(parser, earlier + rows, sources, name, path, image_size,
                                                                    classes.get(name))
        start = time.perf_counter()
        if source:  # no validation classes of its own: another run's choice
            validation, val_classes, val_images = source["validation"], source["val_classes"], source["val_images"]
        else:
            support = half_split(val_labels)
            validation = {str(e): measure(val_vectors[~support], val_labels[~support], val_vectors[support],
                                          val_labels[support], e) for e in settings}
            val_classes, val_images = sorted(set(val_labels.tolist())), len(val_labels)
        support_records, support_vectors = embed_dataset(embedder, split.support, progress=False)
        query_records, query_vectors = embed_dataset(embedder, split.query, progress=False)
        s_labels = np.array([r.label for r in support_records])
        q_labels = np.array([r.label for r in query_records])
        novel = {str(e): measure(query_vectors, q_labels, support_vectors, s_labels, e) for e in settings}
        grid_seconds = time.perf_counter() - start
        if source:
            chosen, qe_only = by_name[source["chosen"]], by_name[source["qe_only"]]
        else:
            chosen = max(settings, key=lambda e: (validation[str(e)]["mAP"], -settings.index(e)))
            qe_only = max([e for e in settings if e.dba == 0],
                          key=lambda e: (validation[str(e)]["mAP"], -settings.index(e)))
        oracle = max(settings, key=lambda e: (novel[str(e)]["mAP"], -settings.index(e)))
        rows.append({"name": name, "run": path,
                     "imagenet_classes": classes[name].to_dict() if name in classes else None, "image_size": [embedder.image_spec.height,
                                                                    embedder.image_spec.width],
                     "val_classes": val_classes, "val_images": val_images, "chosen_by": sources.get(name),
                     "chosen": str(chosen), "qe_only": str(qe_only), "oracle": str(oracle),
                     "validation": validation, "novel": novel, "grid_seconds": round(grid_seconds, 1)})
        print(f"{name}: none {novel['none']['mAP']:.3f}, {chosen} {novel[str(chosen)]['mAP']:.3f}", file=sys.stderr)
    report = {**header("reranking", "benchmarks/reranking.py", argv if argv is not None else sys.argv[1:]),
              "data": args.data, "protocol": protocol.name, "grid": {"qe": QE, "dba": DBA, "alpha": ALPHA},
              "rows": rows, "wall_seconds": round(time.perf_counter() - began, 1)}
    if args.merge:
        report = merge_report(report, merged_into)
    write_report(report, args.out, markdown)
    return 0


def markdown(report: dict) -> str:
    lines = ["### Re-ranking: query expansion and database-side augmentation, chosen on held-out classes", "",
             f"{commands_text(report)}. "
             f"Settings: qe in {list(report['grid']['qe'])}, dba in {list(report['grid']['dba'])}, alpha in "
             f"{list(report['grid']['alpha'])}, chosen by mAP on each run's validation classes (held out of its "
             "training; half of each class's photos as support, half as queries), or for a run trained on every "
             "base class, on those of the run named in \"chosen on\" (the same recipe with validation classes held out); "
             "figures on the 16 novel classes, each query against the support images.", "",
             "| model | input | re-ranking | chosen on | val mAP | mAP | R@1 | R@5 |", "|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        size = "{}x{}".format(*row["image_size"])
        for label, setting, where in (("none", "none", "–"), ("query expansion", row["qe_only"], chosen_on(row)),
                                      ("QE + DBA", row["chosen"], chosen_on(row)),
                                      ("best on the novel classes (not a fair figure)", row["oracle"], "test")):
            n, v = row["novel"][setting], row["validation"][setting]
            lines.append(f"| {model_name(row)} | {size} | {label}: `{setting}` | {where} | {v['mAP']:.3f} | "
                         f"{n['mAP']:.3f} | {n['R@1']:.3f} | {n['R@5']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
