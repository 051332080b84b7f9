"""Dataset readers, one module per layout, resolved by name.

`load_dataset("kaggle:/data/fashion", label="subCategory")` or, with the layout guessed from
the files present, `load_dataset("/data/fashion")`.

| name          | layout                                                     |
|---------------|------------------------------------------------------------|
| `benchmark`   | `manifest.csv` + `protocol.json` (fashion-products)        |
| `kaggle`      | `styles.csv` + `images/<id>.jpg`                           |
| `inshop`      | DeepFashion In-Shop `list_eval_partition.txt`              |
| `street2shop` | `json/{train,test}_pairs_*.json`, `json/retrieval_*.json`  |
| `folder`      | `root/<label>/<image>`                                     |
| `csv`         | a CSV manifest `path,label[,text]`                         |
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from visnet.data.readers.benchmark import read_benchmark
from visnet.data.readers.folder import read_folder
from visnet.data.readers.inshop import read_inshop
from visnet.data.readers.kaggle import read_kaggle
from visnet.data.readers.manifest import read_manifest
from visnet.data.readers.street2shop import read_street2shop
from visnet.data.records import Dataset
from visnet.registry import Registry

readers = Registry("dataset layout")
readers.register("benchmark")(read_benchmark)
readers.register("kaggle")(read_kaggle)
readers.register("inshop")(read_inshop)
readers.register("street2shop")(read_street2shop)
readers.register("folder")(read_folder)
readers.register("csv")(read_manifest)


def detect_layout(path: str) -> str:
    """Guesses the layout of `path` from the files it holds."""
    if os.path.isfile(path):
        if path.lower().endswith(".csv"):
            return "csv"
        raise ValueError(f"Cannot tell the layout of the file {path}: expected a .csv manifest.")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Data path not found: {path}")

    def has(*names: str) -> bool:
        return os.path.exists(os.path.join(path, *names))

    if has("manifest.csv") and has("protocol.json"):
        return "benchmark"
    if has("styles.csv"):
        return "kaggle"
    if has("list_eval_partition.txt") or has("Eval", "list_eval_partition.txt"):
        return "inshop"
    json_dir = os.path.join(path, "json")
    if os.path.isdir(json_dir) and any(f.endswith(".json") for f in os.listdir(json_dir)):
        return "street2shop"
    if has("manifest.csv"):
        return "csv"
    if any(os.path.isdir(os.path.join(path, d)) and not d.startswith(".") for d in os.listdir(path)):
        return "folder"
    raise ValueError(
        f"Cannot tell the layout of {path}. Name it explicitly as LAYOUT:PATH with LAYOUT one of "
        f"{', '.join(readers.names())}."
    )


def parse_spec(spec: str) -> tuple[str, str]:
    """Splits `LAYOUT:PATH` (or a bare path, whose layout is detected) into (layout, path)."""
    layout, sep, path = spec.partition(":")
    if sep and layout.lower() in readers:
        if not path:
            raise ValueError(f"Data spec {spec!r} names the layout but no path.")
        return layout.lower(), path
    if sep and layout.isalnum() and len(layout) > 1 and not os.path.exists(spec):
        raise ValueError(
            f"Unknown dataset layout {layout!r} in {spec!r}. Available: {', '.join(readers.names())}."
        )
    return detect_layout(spec), spec


def load_dataset(spec: str, **options: Any) -> Dataset:
    """Reads a dataset from `LAYOUT:PATH` or a bare path (layout detected).

    Args:
        spec: str. E.g. `kaggle:/data/fashion`, `folder:photos/`, `/data/fashion-products`.
        **options: passed to the reader (`label`, `check`, `progress`, ...). Options a reader
            does not take raise a ValueError naming them.
    """
    layout, path = parse_spec(spec)
    reader = readers.lookup(layout)
    accepted = inspect.signature(reader).parameters
    unknown = sorted(k for k in options if k not in accepted)
    if unknown:
        raise ValueError(
            f"The {layout} reader does not take {', '.join(unknown)}. "
            f"It takes: {', '.join(p for p in accepted if p not in ('root', 'path'))}."
        )
    return reader(path, **options)


__all__ = [
    "detect_layout",
    "load_dataset",
    "parse_spec",
    "read_benchmark",
    "read_folder",
    "read_inshop",
    "read_kaggle",
    "read_manifest",
    "read_street2shop",
    "readers",
]
