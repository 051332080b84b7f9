"""One folder per class (or per item): `root/<label>/<image file>`."""

from __future__ import annotations

import os

from visnet.data.readers.common import (
    IMAGE_EXTENSIONS,
    SYMLINK_LOOP,
    finish,
    is_directory,
    is_regular,
    loops_back,
    require_dir,
    stat_entry,
)
from visnet.data.records import Dataset, Record, SkipReport
from visnet.data.validation import DEFAULT_MAX_PIXELS


def _list(folder: str, report: SkipReport) -> list[str]:
    """The sorted entries of `folder`; [] (reported like an unreadable file) when it cannot be listed."""
    try:
        return sorted(os.listdir(folder))
    except FileNotFoundError:
        report.add("missing file", folder)
    except OSError as error:
        report.add(f"unreadable file ({error.strerror})", folder)
    return []


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
    image is reported as an empty class. Entries that are not usable files are skipped and
    counted with the reasons the CSV reader gives the same paths: a broken symlink is a
    "missing file", a symlink loop an "unreadable file (Too many levels of symbolic links)" (so
    is a directory symlink back to its folder or an ancestor; it is never followed), a
    directory with an image extension "not a file". Loose files in `root` are ignored.
    """
    if by not in ("class", "item"):
        raise ValueError(f"by must be 'class' or 'item'. Received: by={by!r}")
    require_dir(root, "Image folder")
    report = SkipReport()
    records = []
    for label in _list(root, report):
        folder = os.path.join(root, label)
        if label.startswith("."):
            continue
        info, problem = stat_entry(folder)
        if problem is None and is_directory(info) and loops_back(folder, root):
            problem = SYMLINK_LOOP
        if problem is not None:
            report.add(problem, folder)
            continue
        if not is_directory(info):
            continue
        found = 0
        for name in _list(folder, report):
            path = os.path.join(folder, name)
            if name.startswith("."):
                continue
            info, problem = stat_entry(path)
            is_image = name.lower().endswith(IMAGE_EXTENSIONS)
            if problem is None:
                if is_directory(info):
                    if loops_back(path, folder):
                        problem = SYMLINK_LOOP
                    elif is_image:
                        problem = "not a file"
                    else:
                        continue  # a deeper folder
                elif not is_regular(info):
                    problem = "not a file"  # a FIFO, socket or device: never opened
                elif not is_image:
                    problem = "not an image file (extension)"
            if problem is not None:
                report.add(problem, path)
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
