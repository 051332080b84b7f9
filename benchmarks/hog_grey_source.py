"""Why visnet's HOG figures differ from the reference implementation's in the third digit.

Computes the deterministic HOG figures (closed-set k-NN, open-set mAP and Recall@K) of the
benchmark protocol with the grey image taken three ways:

- `visnet`: visnet's pipeline (JPEG -> RGB with the accurate IDCT -> ITU-R 601 grey);
- `opencv-rgb`: OpenCV decodes RGB, then `cv2.cvtColor(..., COLOR_BGR2GRAY)`;
- `opencv-luma`: OpenCV decodes straight to grey (`IMREAD_GRAYSCALE`, libjpeg's luma), as the
  reference implementation did.

Writes `results/hog_grey_source.json` and `.md`.

    python benchmarks/hog_grey_source.py --data ../shared/data/fashion-products
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import machine  # noqa: E402
from visnet.baselines import HOGEmbedder  # noqa: E402
from visnet.baselines.common import l2_normalize  # noqa: E402
from visnet.data.protocol import Protocol  # noqa: E402
from visnet.data.readers import load_dataset  # noqa: E402
from visnet.evaluation import embed_dataset, knn_accuracy, retrieval_metrics  # noqa: E402


def opencv_hog(paths: list[str], mode: str, hog: HOGEmbedder) -> np.ndarray:
    descriptor = hog._descriptor
    out = []
    for path in paths:
        if mode == "opencv-luma":
            grey = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        else:
            grey = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
        out.append(descriptor.compute(grey).reshape(-1))
    return l2_normalize(np.array(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="benchmark folder (manifest.csv + protocol.json)")
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)

    dataset = load_dataset(args.data, check="exists")
    protocol = Protocol.load(os.path.join(args.data, "protocol.json"))
    hog = HOGEmbedder(image_size=protocol.image_size_hw or (128, 96))
    ids = list(dict.fromkeys([*protocol.train_ids, *protocol.test_ids, *protocol.support_ids, *protocol.query_ids]))
    subset = dataset.select(ids)
    labels = dict(zip(subset.ids, subset.labels))
    rows = {}
    for mode in ("visnet", "opencv-rgb", "opencv-luma"):
        start = time.perf_counter()
        if mode == "visnet":
            kept, vectors = embed_dataset(hog, subset, progress=False)
            assert len(kept) == len(subset)
        else:
            vectors = opencv_hog(subset.paths, mode, hog)
        row = dict(zip(subset.ids, vectors))

        def part(part_ids, row=row):
            return np.array([row[i] for i in part_ids]), np.array([labels[i] for i in part_ids])

        knn = knn_accuracy(*part(protocol.train_ids), *part(protocol.test_ids), ks=(1, 5))
        query, support = part(protocol.query_ids), part(protocol.support_ids)
        retrieval = retrieval_metrics(query[0], query[1], support[0], support[1], ks=(1, 5, 10, 20))
        rows[mode] = {"knn_1": knn[1], "knn_5": knn[5], "mAP": retrieval.mean_average_precision,
                      **{f"R@{k}": v for k, v in retrieval.recall.items()},
                      "seconds": round(time.perf_counter() - start, 1)}
        print(mode, rows[mode], file=sys.stderr)

    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "hog_grey_source.json"), "w") as handle:
        json.dump({"benchmark": "hog_grey_source", "data": args.data, "machine": machine(),
                   "command": f"python benchmarks/hog_grey_source.py --data {args.data}", "rows": rows}, handle, indent=2)
    lines = ["### HOG: where the grey image comes from", "",
             f"Command: `python benchmarks/hog_grey_source.py --data {args.data}`", "",
             "| grey image | k-NN k=1 | k=5 | mAP | R@1 | R@5 | R@10 | R@20 |", "|---|---|---|---|---|---|---|---|"]
    for mode, r in rows.items():
        lines.append(f"| {mode} | {100 * r['knn_1']:.1f}% | {100 * r['knn_5']:.1f}% | {r['mAP']:.4f} | "
                     f"{r['R@1']:.3f} | {r['R@5']:.3f} | {r['R@10']:.3f} | {r['R@20']:.3f} |")
    with open(os.path.join(args.out_dir, "hog_grey_source.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
