"""Helpers shared by the readers: CSV rows that survive stray commas, and the final checks."""

from __future__ import annotations

import csv
import errno
import os
import stat

from visnet.data.records import Dataset, EmptyDatasetError, Record, SkipReport
from visnet.data.validation import DEFAULT_MAX_PIXELS, check_images

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")


#: The skip reason of a symlink loop, worded as `check_image_file` words the OS error for one.
SYMLINK_LOOP = f"unreadable file ({os.strerror(errno.ELOOP)})"


def stat_entry(path: str) -> tuple[os.stat_result | None, str | None]:
    """`os.stat(path)` (symlinks followed), or None and the reason the entry is skipped.

    The reasons are those `visnet.data.validation.check_image_file` gives the same path, so a
    broken symlink or a symlink loop is counted alike whether a folder listing or a CSV row
    named it: "missing file", or "unreadable file (<OS error>)" (a loop:
    `SYMLINK_LOOP`).
    """
    try:
        return os.stat(path), None
    except FileNotFoundError:
        return None, "missing file"
    except OSError as error:
        return None, f"unreadable file ({error.strerror})"


def is_regular(info: os.stat_result) -> bool:
    return stat.S_ISREG(info.st_mode)


def is_directory(info: os.stat_result) -> bool:
    return stat.S_ISDIR(info.st_mode)


def loops_back(path: str, folder: str) -> bool:
    """Whether the directory `path` (an entry of `folder`) resolves to `folder` or one of its
    ancestors: a directory symlink that makes the tree a loop."""
    if not os.path.islink(path):
        return False
    target, here = os.path.realpath(path), os.path.realpath(folder)
    return here == target or here.startswith(target.rstrip(os.sep) + os.sep)


def require_file(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def require_dir(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} not found (expected a directory): {path}")
    return path


def _has_bad_bytes(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _redecode(text: str) -> str:
    """Text whose bytes were not UTF-8, read as Windows-1252 (Latin-1 for its 5 holes)."""
    raw = text.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_csv_dicts(path: str, report: SkipReport) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Reads a CSV file with a header into dicts.

    Rows with more fields than the header (unquoted commas in a product name, as in Kaggle's
    `styles.csv`) keep the extra fields joined, with their commas, in the last column. Rows with
    fewer fields are skipped and counted; blank rows are ignored. Bytes that are not UTF-8 never
    cost more than their own row: such a row is read as Windows-1252 and counted.

    Returns:
        The header and a list of (line number, row dict), values stripped.
    """
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ValueError(f"{path} is empty: expected a header row.") from None
        except csv.Error as error:
            raise ValueError(f"{path} is not a readable CSV file: {error}") from None
        if any(_has_bad_bytes(h) for h in header):
            header = [_redecode(h) for h in header]
        if len(set(header)) != len(header):
            raise ValueError(f"{path} has duplicate column names: {header}")
        rows = []
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:
                report.add("malformed CSV row", f"{path}:{reader.line_num}")
                continue
            line = reader.line_num
            if not row or all(not field.strip() for field in row):
                continue
            if any(_has_bad_bytes(field) for field in row):
                row = [_redecode(field) for field in row]
                report.add("row not in UTF-8 (read as Windows-1252)", f"{path}:{line}")
            if len(row) > len(header):
                row = row[: len(header) - 1] + [",".join(row[len(header) - 1 :])]
            elif len(row) < len(header):
                report.add("malformed CSV row", f"{path}:{line}")
                continue
            rows.append((line, {k: v.strip() for k, v in zip(header, row)}))
    return header, rows


def require_column(column: str, header: list[str], path: str, what: str = "label") -> None:
    if column not in header:
        raise ValueError(
            f"Unknown {what} column {column!r} in {path}. Available columns: {', '.join(header)}"
        )


def finish(
    records: list[Record],
    report: SkipReport,
    name: str,
    check: str = "decode",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = False,
) -> Dataset:
    """Builds the dataset: drops repeated ids (counted), then checks image files."""
    seen: set[str] = set()
    unique = []
    for record in records:
        if record.id in seen:
            report.add("duplicate id (first kept)", record.id)
        else:
            seen.add(record.id)
            unique.append(record)
    dataset = Dataset(unique, name=name, report=report, allow_empty=True)
    dataset = check_images(dataset, mode=check, max_pixels=max_pixels, progress=progress)
    if not len(dataset):
        raise EmptyDatasetError(f"No usable image records in {name} ({dataset.report}).")
    return dataset
