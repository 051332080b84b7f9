"""Real product embeddings for index benchmarks: every benchmark photo and augmented copies of it,
embedded by an export; held-out photos as queries.

A catalogue search is a photo of a product that is in the catalogue under other photos. Here:
`--queries` photos (seeded) are held out as queries; the gallery holds every other photo and
`--copies` augmented copies of every photo (the held-out ones too: their product is in the
catalogue), each a random crop of 80-100% of the area, a horizontal flip half the time, a
rotation of up to 8 degrees, brightness and contrast within 20%, re-encoded as JPEG at quality
60-90. Writes an .npz (`gallery`, `queries`, float32, L2-normalised) for
`benchmarks/index_search.py --real FILE` (not committed: it is made of the benchmark's photos).

    python benchmarks/product_embeddings.py --model benchmarks/models/effnet-siamese \\
        --data ../shared/data/fashion-products --out benchmarks/index/products.npz
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def augmented(data: bytes, rng: np.random.Generator) -> bytes:
    """One photo-like copy of an encoded image (PIL only)."""
    from PIL import Image, ImageEnhance

    image = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = image.size
    area = rng.uniform(0.8, 1.0)
    w, h = max(1, round(width * np.sqrt(area))), max(1, round(height * np.sqrt(area)))
    left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    image = image.crop((left, top, left + w, top + h)).resize((width, height), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = image.rotate(float(rng.uniform(-8, 8)), resample=Image.Resampling.BILINEAR, fillcolor=(255, 255, 255))
    image = ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.8, 1.2)))
    image = ImageEnhance.Contrast(image).enhance(float(rng.uniform(0.8, 1.2)))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=int(rng.integers(60, 91)))
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="export base path (models/NAME)")
    parser.add_argument("--data", required=True, help="dataset (LAYOUT:PATH or a path)")
    parser.add_argument("--copies", type=int, default=3, help="augmented copies of every photo (default 3)")
    parser.add_argument("--queries", type=int, default=1000, help="photos held out as queries (default 1000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="the .npz to write")
    args = parser.parse_args(argv)
    if args.copies < 0 or args.queries < 1:
        parser.error("--copies must be >= 0 and --queries >= 1")

    from tqdm import tqdm

    from visnet.data.readers import load_dataset
    from visnet.exported import ExportedModel

    began = time.perf_counter()
    model = ExportedModel(args.model)
    records = load_dataset(args.data, progress=False).records
    rng = np.random.default_rng(args.seed)
    held = set(rng.choice(len(records), size=min(args.queries, len(records) // 2), replace=False).tolist())
    gallery, queries = [], []
    work = [(i, copy) for i in range(len(records)) for copy in range(args.copies + 1)]
    for start in tqdm(range(0, len(work), args.batch_size), desc="embedding", unit="batch"):
        batch, images = work[start : start + args.batch_size], []
        for i, copy in batch:
            data = open(records[i].path, "rb").read()
            images.append(data if copy == 0 else augmented(data, np.random.default_rng([args.seed, i, copy])))
        vectors, valid = model.embed(images)
        for (i, copy), vector, ok in zip(batch, vectors, valid):
            if ok:
                (queries if copy == 0 and i in held else gallery).append(vector)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    from benchmarks.common import machine

    np.savez(args.out, gallery=np.asarray(gallery, np.float32), queries=np.asarray(queries, np.float32),
             model=f"{model.name} v{model.version}", data=args.data, copies=args.copies,
             machine=json.dumps(machine()), seconds=time.perf_counter() - began)
    print(f"{len(gallery)} gallery and {len(queries)} query embeddings of {model.name} v{model.version} "
          f"({len(records)} photos, {args.copies} copies each) in {time.perf_counter() - began:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
