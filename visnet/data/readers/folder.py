"""One folder per class (or per item): `root/<label>/<image file>`."""

from __future__ import annotations

import os

from visnet.data.readers.common import IMAGE_EXTENSIONS, finish, require_dir
from visnet.data.records import Dataset, Record, SkipReport
from visnet.data.validation import DEFAULT_MAX_PIXELS


def read_folder(
    root: str,
    by: str = "class",
    check: str = "decode",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = False,
) -> Dataset:
    """Reads `root/<label>/<file>`: every sub-folder is a class (or an item, with `by="item"`).

    Files with an image extension (.jpg .jpeg .png .gif .bmp) are records; other files are
    counted as skipped, hidden files and deeper folders are ignored, and a sub-folder with no
    image is reported as an empty class.
    """
    if by not in ("class", "item"):
        raise ValueError(f"by must be 'class' or 'item'. Received: by={by!r}")
    require_dir(root, "Image folder")
    report = SkipReport()
    records = []
    for label in sorted(os.listdir(root)):
        folder = os.path.join(root, label)
        if label.startswith(".") or not os.path.isdir(folder):
            continue
        found = 0
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.startswith(".") or not os.path.isfile(path):
                continue
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                report.add("not an image file (extension)", path)
                continue
            found += 1
            records.append(
                Record(
                    path=path,
                    label=label,
                    id=f"{label}/{name}",
                    item_id=label if by == "item" else None,
                )
            )
        if not found:
            report.add("empty class folder", folder)
    return finish(records, report, f"folder:{root}", check, max_pixels, progress)
