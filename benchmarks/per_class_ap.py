"""Where learned embeddings and HOG differ: open-set average precision per novel class.

Embeds the protocol's open-set queries and support images with HOG and with each finished run
of `metric_learning.py` (and the run + HOG pathway row, at the weight that script chose on
validation classes), then averages the per-query AP within each novel class. Writes
`results/per_class_ap.json` and `.md`.

    python benchmarks/per_class_ap.py --data ../shared/data/fashion-products
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import machine  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the fashion-products folder")
    parser.add_argument("--runs-dir", default=os.path.join(HERE, "runs"), help="runs of metric_learning.py")
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)

    from visnet.baselines import embedders
    from visnet.data.protocol import Protocol
    from visnet.data.readers import load_dataset
    from visnet.evaluation.embedding import embed_dataset
    from visnet.evaluation.retrieval import retrieval_metrics
    from visnet.training.runs import Run

    protocol = Protocol.load(os.path.join(args.data, "protocol.json"))
    dataset = load_dataset(args.data, check="none")
    known = set(dataset.ids)
    support = dataset.select([i for i in protocol.support_ids if i in known], "support")
    query = dataset.select([i for i in protocol.query_ids if i in known], "query")

    candidates = {"HOG": lambda: embedders.get("hog", image_size=protocol.image_size_hw)}
    for name in ("siamese", "visnet", "capsule", "hybrid"):
        if os.path.exists(os.path.join(args.runs_dir, name, "best.keras")):
            candidates[name] = lambda name=name: Run(os.path.join(args.runs_dir, name)).embedder("best")
    report_path = os.path.join(args.out_dir, "metric_learning.json")
    if os.path.exists(report_path):
        for row in json.load(open(report_path))["rows"]:
            if "from_run" in row and os.path.exists(os.path.join(args.runs_dir, row["from_run"], "best.keras")):
                candidates[row["arch"]] = lambda row=row: Run(os.path.join(args.runs_dir, row["from_run"])).embedder(
                    "best", row["hog_weight"])

    classes = sorted(set(query.labels))
    table: dict[str, dict[str, float]] = {}
    for name, make in candidates.items():
        start = time.perf_counter()
        embedder = make()
        q_kept, q = embed_dataset(embedder, query, progress=False)
        s_kept, s = embed_dataset(embedder, support, progress=False)
        result = retrieval_metrics(q, q_kept.labels, s, s_kept.labels, ks=(1,))
        labels = np.array(q_kept.labels)
        table[name] = {c: float(np.nanmean(result.average_precisions[labels == c])) for c in classes}
        table[name]["(all)"] = result.mean_average_precision
        print(f"{name}: mAP {result.mean_average_precision:.3f} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)

    counts = {c: int(np.sum(np.array(query.labels) == c)) for c in classes}
    names = list(table)
    lines = ["### Open-set AP per novel class", "",
             f"Command: `python benchmarks/per_class_ap.py --data {args.data}` (mean AP of each class's queries "
             "against the open-set support images; best of each row in bold)", "",
             "| class | queries | " + " | ".join(f"`{n}`" if n != "HOG" else n for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for c in classes + ["(all)"]:
        values = [table[n][c] for n in names]
        best = max(values)
        cells = [f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in values]
        lines.append(f"| {c} | {counts.get(c, len(query))} | " + " | ".join(cells) + " |")
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "per_class_ap.json"), "w") as handle:
        json.dump({"benchmark": "per_class_ap", "data": args.data, "machine": machine(), "queries": counts,
                   "ap": table}, handle, indent=2)
    with open(os.path.join(args.out_dir, "per_class_ap.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
