"""A plain CSV manifest: `path,label[,text]` plus any other columns."""

from __future__ import annotations

import os
from collections.abc import Sequence

from visnet.data.readers.common import finish, read_csv_dicts, require_column, require_file
from visnet.data.records import SPLITS, Dataset, Record, SkipReport
from visnet.data.validation import DEFAULT_MAX_PIXELS

_RESERVED = ("path", "id", "item_id", "split")


def read_manifest(
    path: str,
    label: str = "label",
    text_columns: Sequence[str] | None = None,
    check: str = "decode",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = False,
) -> Dataset:
    """Reads a CSV manifest with a header row.

    Columns: `path` (relative paths are resolved against the CSV's folder) and the label column
    are required; `text` (or the given `text_columns`), `id`, `item_id` and `split` (train / val /
    test / query / gallery) are used when present; every other column goes in `Record.meta`.
    Rows with an empty path or label, or an unknown split, are skipped and counted.
    """
    require_file(path, "CSV manifest")
    report = SkipReport()
    header, rows = read_csv_dicts(path, report)
    require_column("path", header, path, "path")
    require_column(label, header, path)
    if text_columns is None:
        text_columns = ("text",) if "text" in header else ()
    for column in text_columns:
        require_column(column, header, path, "text")
    base = os.path.dirname(os.path.abspath(path))
    records = []
    for line, row in rows:
        where = f"{path}:{line}"
        if not row["path"]:
            report.add("empty path", where)
            continue
        if not row[label]:
            report.add(f"empty {label}", where)
            continue
        split = row.get("split") or None
        if split is not None and split not in SPLITS:
            report.add("unknown split", where)
            continue
        image = row["path"] if os.path.isabs(row["path"]) else os.path.join(base, row["path"])
        text = " ".join(row[c] for c in text_columns if row[c]) or None
        meta = {k: v for k, v in row.items() if k not in (*_RESERVED, label, *text_columns)}
        records.append(
            Record(
                path=image,
                label=row[label],
                id=row.get("id") or row["path"],
                item_id=row.get("item_id") or None,
                text=text,
                split=split,
                meta=meta,
            )
        )
    return finish(records, report, f"csv:{path}", check, max_pixels, progress)
