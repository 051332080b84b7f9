"""Street2Shop: street photos paired with shop photos of the same product, in JSON files."""

from __future__ import annotations

import glob
import json
import os
import re

from visnet.data.readers.common import IMAGE_EXTENSIONS, finish, require_dir
from visnet.data.records import Dataset, Record, SkipReport
from visnet.data.validation import DEFAULT_MAX_PIXELS

_PAIRS = re.compile(r"^(train|test)_pairs_(.+)\.json$")
_SHOP = re.compile(r"^retrieval_(.+)\.json$")


def _image_path(images: str, photo: str) -> str:
    for extension in IMAGE_EXTENSIONS:
        candidate = os.path.join(images, photo + extension)
        if os.path.exists(candidate):
            return candidate
    return os.path.join(images, photo + ".jpg")


def read_street2shop(
    root: str,
    json_dir: str = "json",
    images: str = "images",
    check: str = "decode",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = False,
) -> Dataset:
    """Reads the Street2Shop layout (Kiapour et al., "Where to buy it", 2015).

    `root/<json_dir>/` holds, per category:
      - `train_pairs_<category>.json` / `test_pairs_<category>.json`: lists of
        `{"photo": id, "product": id, "bbox": {...}}`, street photos of a product;
      - `retrieval_<category>.json`: lists of `{"photo": id, "product": id}`, its shop photos.
    Images are `root/<images>/<photo id>.<ext>`.

    Products are the classes. Street photos get split `query` (test pairs) or `train`; shop photos
    get split `gallery`. `meta` holds the `domain` ("street" / "shop"), the `category` and the
    street photo's `bbox`. A photo paired with several products yields one record per product.
    """
    json_root = require_dir(os.path.join(root, json_dir), "Street2Shop JSON folder")
    image_root = os.path.join(root, images)
    report = SkipReport()
    records = []
    files = sorted(glob.glob(os.path.join(json_root, "*.json")))
    if not any(_PAIRS.match(os.path.basename(f)) or _SHOP.match(os.path.basename(f)) for f in files):
        raise FileNotFoundError(
            f"No train_pairs_*.json, test_pairs_*.json or retrieval_*.json files in {json_root}"
        )
    for file in files:
        base = os.path.basename(file)
        pairs, shop = _PAIRS.match(base), _SHOP.match(base)
        if not (pairs or shop):
            continue
        category = pairs.group(2) if pairs else shop.group(1)
        try:
            with open(file, encoding="utf-8") as handle:
                entries = json.load(handle)
        except (OSError, json.JSONDecodeError) as error:
            report.add("unreadable JSON file", f"{file} ({error})")
            continue
        if not isinstance(entries, list):
            report.add("unreadable JSON file", f"{file} (expected a list)")
            continue
        for n, entry in enumerate(entries):
            if not isinstance(entry, dict) or "photo" not in entry or "product" not in entry:
                report.add("malformed JSON entry", f"{file}[{n}]")
                continue
            photo, product = str(entry["photo"]), str(entry["product"])
            meta = {"category": category, "domain": "street" if pairs else "shop"}
            if pairs:
                split = "query" if pairs.group(1) == "test" else "train"
                if "bbox" in entry:
                    meta["bbox"] = entry["bbox"]
            else:
                split = "gallery"
            records.append(
                Record(
                    path=_image_path(image_root, photo),
                    label=product,
                    id=f"{meta['domain']}:{photo}:{product}",
                    item_id=product,
                    split=split,
                    meta=meta,
                )
            )
    return finish(records, report, f"street2shop:{root}", check, max_pixels, progress)
