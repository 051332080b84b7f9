"""DeepFashion In-Shop Clothes Retrieval: `list_eval_partition.txt` with train / query / gallery."""

from __future__ import annotations

import os

from visnet.data.readers.common import finish, require_file
from visnet.data.records import Dataset, Record, SkipReport
from visnet.data.validation import DEFAULT_MAX_PIXELS

_STATUS = {"train": "train", "query": "query", "gallery": "gallery"}


def read_inshop(
    root: str,
    partition: str = "list_eval_partition.txt",
    check: str = "decode",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = False,
) -> Dataset:
    """Reads DeepFashion In-Shop's evaluation partition.

    The file (found in `root` or `root/Eval/`) holds a count line, a header line
    (`image_name item_id evaluation_status`) and one whitespace-separated row per image. Items
    are the classes: `label` and `item_id` are the item id, `split` is train / query / gallery,
    and `meta` holds the gender and category read from the image path
    (`img/WOMEN/Dresses/id_00000002/02_1_front.jpg`). Image paths are resolved against `root`
    and, failing that, `root/Img/`.
    """
    path = os.path.join(root, partition)
    if not os.path.isfile(path) and os.path.isfile(os.path.join(root, "Eval", partition)):
        path = os.path.join(root, "Eval", partition)
    require_file(path, "In-Shop partition file")
    report = SkipReport()
    records = []
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    body = lines
    if body and body[0].strip().isdigit():
        body = body[1:]
    if body and body[0].split()[:1] == ["image_name"]:
        body = body[1:]
    for number, line in enumerate(body, start=len(lines) - len(body) + 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or fields[2] not in _STATUS:
            report.add("malformed partition row", f"{path}:{number}")
            continue
        name, item, status = fields
        image = os.path.join(root, name)
        if not os.path.exists(image) and os.path.exists(os.path.join(root, "Img", name)):
            image = os.path.join(root, "Img", name)
        parts = name.split("/")
        meta = {"gender": parts[1], "category": parts[2]} if len(parts) >= 5 else {}
        records.append(Record(path=image, label=item, id=name, item_id=item, split=_STATUS[status], meta=meta))
    return finish(records, report, f"inshop:{root}", check, max_pixels, progress)
