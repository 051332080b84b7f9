"""Off the studio: novel-class queries made to look like customers' photos, searched against the
clean catalogue photos.

Each open-set query photo of the protocol's 16 novel classes is turned, once and with a fixed
seed, into a "customer photo" with `Augmentation.photo()` (a scene instead of the studio
white, a perspective tilt, uneven light, something in front of the product, plus the usual
crop, rotation and colour changes); the gallery stays the clean support photos. Each embedder
is measured on the clean queries and on the photo queries (mAP, Recall@1/5): the gap is what
leaving the studio costs it. Writes `results/photo_queries.json`, `.md` and a strip of example
photo queries (`photo_queries.png`, git-ignored: it is made of the benchmark's photos).

    python benchmarks/photo_queries.py --data ../shared/data/fashion-products \\
        --run effnet-siamese=benchmarks/runs/effnet-siamese --run effnet-photo=benchmarks/runs/effnet-photo
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import header, host, write_report  # noqa: E402


def photo_queries(images: np.ndarray, seed: int) -> np.ndarray:
    """The customer-photo version of each image (uint8 RGB), deterministic for a seed."""
    import tensorflow as tf

    from visnet.data.augment import Augmentation, augment_batch

    out = []
    for start in range(0, len(images), 64):
        batch = tf.constant(images[start:start + 64], tf.float32)
        out.append(augment_batch(batch, tf.constant([seed, start], tf.int64), Augmentation.photo()).numpy())
    return np.clip(np.rint(np.concatenate(out)), 0, 255).astype(np.uint8)


def embed(embedder, images: np.ndarray, batch: int = 64) -> np.ndarray:
    from visnet.data.pipeline import normalize_image

    mode = embedder.image_spec.normalization
    return np.concatenate([embedder(np.asarray(normalize_image(images[i:i + batch].astype(np.float32), mode)))
                           for i in range(0, len(images), batch)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the fashion-products folder")
    parser.add_argument("--run", action="append", default=[], metavar="NAME=PATH", help="a trained run, repeatable")
    parser.add_argument("--off-the-shelf", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure the ImageNet EfficientNet-Lite0 without training (default on)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the photo queries (default 0)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "photo_queries"), help="output prefix")
    args = parser.parse_args(argv)
    runs = []
    for item in args.run:
        name, sep, path = item.partition("=")
        if not sep or not os.path.isdir(path):
            parser.error(f"--run takes NAME=PATH of a run directory. Received: {item!r}")
        runs.append((name, path))

    from PIL import Image

    from visnet.data.image_spec import ImageSpec
    from visnet.data.pipeline import load_images
    from visnet.data.protocol import Protocol
    from visnet.data.readers import load_dataset
    from visnet.evaluation.retrieval import retrieval_metrics
    from visnet.training.runs import Run

    began = time.perf_counter()
    protocol = Protocol.load(os.path.join(args.data, "protocol.json"))
    dataset = load_dataset(args.data, check="none")
    support, query = dataset.select(protocol.support_ids, "support"), dataset.select(protocol.query_ids, "query")
    embedders = []
    if args.off_the_shelf:
        from visnet.baselines.pretrained import PretrainedEmbedder

        embedders.append(("efficientnet-lite0 ImageNet, off the shelf (128x96)",
                          PretrainedEmbedder("efficientnet-lite0", weights="imagenet", image_size=(128, 96))))
    embedders += [(name, Run(path).embedder("best")) for name, path in runs]
    cache: dict[tuple, tuple] = {}
    rows = []
    for name, embedder in embedders:
        spec = embedder.image_spec
        key = (spec.height, spec.width, spec.resize)
        if key not in cache:
            raw = ImageSpec(spec.height, spec.width, spec.resize, spec.pad_value, "none")
            gallery, g_kept = load_images(support.paths, raw)
            queries, q_kept = load_images(query.paths, raw)
            photos = photo_queries(queries, args.seed)
            cache[key] = (gallery, np.array(support.labels)[g_kept], queries, photos, np.array(query.labels)[q_kept])
        gallery, g_labels, queries, photos, q_labels = cache[key]
        start = time.perf_counter()
        g = embed(embedder, gallery)
        row = {"name": name, "input": f"{spec.height}x{spec.width}"}
        for kind, images in (("studio", queries), ("photo", photos)):
            result = retrieval_metrics(embed(embedder, images), q_labels, g, g_labels, ks=(1, 5))
            row[kind] = {"mAP": result.mean_average_precision, "R@1": result.recall[1], "R@5": result.recall[5]}
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        print(f"{name}: mAP studio {row['studio']['mAP']:.3f}, photo {row['photo']['mAP']:.3f}", file=sys.stderr)
    if cache:
        _, _, queries, photos, _ = next(iter(cache.values()))
        picks = np.linspace(0, len(queries) - 1, 8).astype(int)
        strip = np.concatenate([np.concatenate(list(queries[picks]), axis=1),
                                np.concatenate(list(photos[picks]), axis=1)], axis=0)
        Image.fromarray(strip).save(args.out + ".png")
    report = {**header("photo_queries", "benchmarks/photo_queries.py", argv if argv is not None else sys.argv[1:]),
              "queries": len(query), "gallery": len(support), "seed": args.seed, "rows": rows,
              "wall_seconds": round(time.perf_counter() - began, 1)}
    write_report(report, args.out, markdown)
    return 0


def markdown(report: dict) -> str:
    lines = ["### Off the studio: customers' photos against the catalogue (16 novel classes)", "",
             f"Command: `{report['command']}` on {host(report['machine'])}. Each of the {report['queries']} "
             f"novel-class query photos made into a customer photo once (`Augmentation.photo()`: a scene behind "
             f"the product, perspective tilt, uneven light, an occluding object; seed {report['seed']}), searched "
             f"against the {report['gallery']} clean support photos (`photo_queries.png`, written beside this "
             "table and not committed, shows examples).", "",
             "| embedder | input | studio mAP | photo mAP | studio R@1 | photo R@1 | photo R@5 |",
             "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        s, p = r["studio"], r["photo"]
        lines.append(f"| {r['name']} | {r['input']} | {s['mAP']:.3f} | {p['mAP']:.3f} | {s['R@1']:.3f} | "
                     f"{p['R@1']:.3f} | {p['R@5']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
