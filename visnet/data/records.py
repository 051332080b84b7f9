"""The one record type every reader yields, a dataset of records, and the report of what was skipped."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

SPLITS = ("train", "val", "test", "query", "gallery")


class EmptyDatasetError(ValueError):
    """Raised when a reader or a filter leaves no usable record."""


@dataclasses.dataclass(frozen=True)
class Record:
    """One image and what is known about it.

    Args:
        path: str. Path of the image file.
        label: str. The class the image belongs to (an article type, or an item id when
            items are the classes, as in DeepFashion In-Shop).
        id: str. A stable identifier (product id, relative path). Defaults to `path`.
        item_id: str or None. The product/article the photo shows, when the layout has one.
        text: str or None. Free text about the product (its name or description).
        split: str or None. One of `train`, `val`, `test`, `query`, `gallery` when the layout
            fixes a split.
        meta: mapping. Any other column of the source (colour, gender, bounding box...).
    """

    path: str
    label: str
    id: str = ""
    item_id: str | None = None
    text: str | None = None
    split: str | None = None
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    def __post_init__(self):
        if not self.id:
            object.__setattr__(self, "id", self.path)
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None. Received: split={self.split!r}")


class SkipReport:
    """Counts skipped inputs by reason and keeps the first few paths of each.

    Args:
        examples: int. How many example paths to keep per reason.
    """

    def __init__(self, examples: int = 5):
        self.examples = examples
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._paths: dict[str, list[str]] = {}

    def add(self, reason: str, path: str) -> None:
        self._counts[reason] = self._counts.get(reason, 0) + 1
        kept = self._paths.setdefault(reason, [])
        if len(kept) < self.examples:
            kept.append(str(path))

    def extend(self, other: SkipReport) -> SkipReport:
        for reason, count in other._counts.items():
            self._counts[reason] = self._counts.get(reason, 0) + count
            kept = self._paths.setdefault(reason, [])
            for path in other._paths[reason]:
                if len(kept) < self.examples:
                    kept.append(path)
        return self

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def paths(self, reason: str) -> list[str]:
        return list(self._paths.get(reason, []))

    def __bool__(self) -> bool:
        return self.total > 0

    def __str__(self) -> str:
        if not self:
            return "nothing skipped"
        lines = [f"skipped {self.total} input(s):"]
        for reason, count in self._counts.items():
            shown = ", ".join(self._paths[reason])
            more = " ..." if count > len(self._paths[reason]) else ""
            lines.append(f"  {count} {reason}: {shown}{more}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            reason: {"count": count, "examples": self._paths[reason]}
            for reason, count in self._counts.items()
        }


class Dataset(Sequence[Record]):
    """An ordered, immutable collection of records plus the report of what its reader skipped.

    Args:
        records: iterable of `Record`.
        name: str. Where the records came from (shown in messages).
        report: `SkipReport` or None. What was skipped while reading.
        allow_empty: bool. Without it an empty dataset raises `EmptyDatasetError`.
    """

    def __init__(
        self,
        records: Iterable[Record],
        name: str = "dataset",
        report: SkipReport | None = None,
        allow_empty: bool = False,
    ):
        self.records: tuple[Record, ...] = tuple(records)
        self.name = name
        self.report = report if report is not None else SkipReport()
        if not self.records and not allow_empty:
            detail = f" ({self.report})" if self.report else ""
            raise EmptyDatasetError(f"No usable image records in {name}{detail}.")

    # Sequence protocol ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return self._derive(self.records[index])
        return self.records[index]

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {len(self)} records, {len(self.classes)} classes)"

    # Columns -------------------------------------------------------------------------------
    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.records]

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.records]

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    @property
    def texts(self) -> list[str | None]:
        return [r.text for r in self.records]

    @property
    def classes(self) -> list[str]:
        """Sorted distinct labels."""
        return sorted(set(self.labels))

    def label_ids(self, classes: Sequence[str] | None = None) -> np.ndarray:
        """Integer class index of each record, by position in `classes` (default: `self.classes`)."""
        classes = list(self.classes if classes is None else classes)
        lookup = {c: i for i, c in enumerate(classes)}
        missing = sorted({r.label for r in self.records} - lookup.keys())
        if missing:
            raise ValueError(f"Labels not in the given classes: {missing[:5]}")
        return np.array([lookup[r.label] for r in self.records], dtype=np.int64)

    def class_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.records:
            counts[r.label] = counts.get(r.label, 0) + 1
        return dict(sorted(counts.items()))

    # Derived datasets ----------------------------------------------------------------------
    def _derive(self, records: Iterable[Record], suffix: str = "", allow_empty: bool = False):
        return Dataset(
            records,
            name=self.name + suffix,
            report=SkipReport(self.report.examples).extend(self.report),
            allow_empty=allow_empty,
        )

    def filter(self, keep: Callable[[Record], bool], description: str = "filter") -> Dataset:
        return self._derive((r for r in self.records if keep(r)), f"[{description}]")

    def where(self, split: str | None = None, labels: Iterable[str] | None = None) -> Dataset:
        """Records of one split and/or of some labels."""
        wanted = None if labels is None else set(labels)
        parts = []
        if split is not None:
            parts.append(f"split={split}")
        if wanted is not None:
            parts.append(f"{len(wanted)} labels")
        return self.filter(
            lambda r: (split is None or r.split == split) and (wanted is None or r.label in wanted),
            ", ".join(parts) or "all",
        )

    def select(self, ids: Iterable[Any], description: str = "selection") -> Dataset:
        """Records with the given ids, in the order of `ids`; unknown ids raise a KeyError."""
        by_id = {r.id: r for r in self.records}
        records, unknown = [], []
        for i in ids:
            record = by_id.get(str(i))
            if record is None:
                unknown.append(str(i))
            else:
                records.append(record)
        if unknown:
            raise KeyError(
                f"{len(unknown)} id(s) not in {self.name}, e.g. {unknown[:5]}. "
                "They may have been skipped as unreadable: see the dataset's report."
            )
        return self._derive(records, f"[{description}]")

    def drop_small_classes(self, min_count: int) -> Dataset:
        """Removes classes with fewer than `min_count` records, counting them in the report."""
        counts = self.class_counts()
        kept = []
        report = SkipReport(self.report.examples).extend(self.report)
        for r in self.records:
            if counts[r.label] >= min_count:
                kept.append(r)
            else:
                report.add(f"in a class with fewer than {min_count} images", r.path)
        return Dataset(kept, name=self.name, report=report)

    def summary(self) -> str:
        counts = self.class_counts()
        sizes = np.array(list(counts.values()))
        text = (
            f"{self.name}: {len(self)} images, {len(counts)} classes "
            f"(images per class: min {sizes.min()}, median {int(np.median(sizes))}, max {sizes.max()})"
        )
        if self.report:
            text += "\n" + str(self.report)
        return text
