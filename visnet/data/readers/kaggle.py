"""Kaggle "Fashion Product Images": `styles.csv` plus `images/<id>.jpg`."""

from __future__ import annotations

import os
from collections.abc import Sequence

from visnet.data.readers.common import finish, read_csv_dicts, require_column, require_file
from visnet.data.records import Dataset, Record, SkipReport
from visnet.data.validation import DEFAULT_MAX_PIXELS


def read_kaggle(
    root: str,
    label: str = "articleType",
    text_columns: Sequence[str] = ("productDisplayName",),
    styles: str = "styles.csv",
    images: str = "images",
    check: str = "decode",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = False,
) -> Dataset:
    """Reads the Kaggle Fashion Product Images layout.

    Args:
        root: str. Folder holding `styles.csv` and `images/`.
        label: str. The label column: `articleType`, `subCategory`, `masterCategory` or any
            other column of `styles.csv`.
        text_columns: sequence of str. Columns joined (with spaces) into the record's text.
        styles: str. The CSV file name inside `root`.
        images: str. The image folder name inside `root`.
        check: str. Image file check, see `visnet.data.validation.check_image_file`.
        max_pixels: int. Larger images are skipped.
        progress: bool. Show a progress bar while checking images.

    Every other column is kept in `Record.meta`. Product names with unquoted commas (22 rows
    of the real file) stay whole. Rows with an empty label or no image file are skipped and
    counted in `dataset.report`.
    """
    path = require_file(os.path.join(root, styles), "Kaggle styles file")
    report = SkipReport()
    header, rows = read_csv_dicts(path, report)
    require_column("id", header, path, "id")
    require_column(label, header, path)
    for column in text_columns:
        require_column(column, header, path, "text")
    records = []
    for line, row in rows:
        image = os.path.join(root, images, f"{row['id']}.jpg")
        if not row[label]:
            report.add(f"empty {label}", f"{path}:{line}")
            continue
        text = " ".join(row[c] for c in text_columns if row[c]) or None
        meta = {k: v for k, v in row.items() if k not in ("id", label)}
        records.append(Record(path=image, label=row[label], id=row["id"], item_id=row["id"], text=text, meta=meta))
    return finish(records, report, f"kaggle:{root}", check, max_pixels, progress)
