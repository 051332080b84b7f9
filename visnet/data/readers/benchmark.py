"""The benchmark layout: `manifest.csv` plus `protocol.json` (as in `fashion-products`)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from visnet.data.protocol import Protocol
from visnet.data.readers.common import read_csv_dicts, require_file
from visnet.data.readers.manifest import read_manifest
from visnet.data.records import Dataset, SkipReport
from visnet.data.validation import DEFAULT_MAX_PIXELS


def read_benchmark(
    root: str,
    label: str | None = None,
    text_columns: Sequence[str] | None = None,
    check: str = "decode",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = False,
) -> Dataset:
    """Reads `root/manifest.csv`, labelled by the protocol's label column.

    Args:
        root: str. Folder with `manifest.csv` and `protocol.json`.
        label: str or None. Label column; defaults to the protocol's `label`.
        text_columns: columns joined into the text; defaults to `productDisplayName` when the
            manifest has it, else `text`.

    The splits come from `visnet.data.protocol.Protocol.load(root/protocol.json)`.
    """
    manifest = require_file(os.path.join(root, "manifest.csv"), "Benchmark manifest")
    if label is None:
        label = Protocol.load(require_file(os.path.join(root, "protocol.json"), "Benchmark protocol")).label
    if text_columns is None:
        header, _ = read_csv_dicts(manifest, SkipReport())
        text_columns = [c for c in ("productDisplayName", "text") if c in header][:1]
    dataset = read_manifest(manifest, label=label, text_columns=text_columns, check=check,
                            max_pixels=max_pixels, progress=progress)
    dataset.name = f"benchmark:{root}"
    return dataset
