"""Checking image files before they reach a pipeline, so a bad file is skipped and counted, not a crash."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from visnet.data.records import Dataset, SkipReport

#: Formats the tf.data pipeline decodes (`tf.io.decode_image`). MPO is what Pillow calls the
#: JPEGs of many phones (a JPEG with extra frames); TensorFlow decodes its first frame.
SUPPORTED_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP")
#: Above this many pixels an image is skipped: decoding it would take gigabytes of memory.
DEFAULT_MAX_PIXELS = 64_000_000
CHECK_MODES = ("decode", "header", "exists", "none")


def check_image_file(path: str, mode: str = "decode", max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """Checks one image file.

    Args:
        path: str. The file.
        mode: str. `decode` reads every pixel (catches truncated files), `header` only the
            header (format and size), `exists` only that a non-empty file is there, `none`
            nothing.
        max_pixels: int. Larger images are rejected.

    Returns:
        None when the file is usable, else the reason it is not (used as the skip reason).
    """
    if mode not in CHECK_MODES:
        raise ValueError(f"mode must be one of {CHECK_MODES}. Received: mode={mode!r}")
    if mode == "none":
        return None
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return "missing file"
    except OSError as error:
        return f"unreadable file ({error.strerror})"
    if os.path.isdir(path):
        return "not a file"
    if size == 0:
        return "empty file"
    if mode == "exists":
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.format not in SUPPORTED_FORMATS:
                    return f"unsupported image format ({image.format})"
                width, height = image.size
                if width * height > max_pixels:
                    return f"image too large (more than {max_pixels} pixels)"
                if width == 0 or height == 0:
                    return "image with no pixels"
                if mode == "decode":
                    image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return f"image too large (more than {max_pixels} pixels)"
    except Image.UnidentifiedImageError:
        return "not an image"
    except PermissionError:
        return "unreadable file (permission denied)"
    except (OSError, SyntaxError, ValueError):
        # PIL raises OSError for truncated data and SyntaxError/ValueError for broken headers.
        return "corrupt image"
    return None


def check_images(
    dataset: Dataset,
    mode: str = "decode",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
    progress: bool = False,
) -> Dataset:
    """Returns the records whose image files pass `check_image_file`; the rest go in the report.

    Args:
        dataset: `Dataset`. Records to check.
        mode: str. See `check_image_file`.
        max_pixels: int. Larger images are skipped.
        workers: int or None. Threads used (PIL releases the GIL while decoding).
        progress: bool. Show a progress bar.
    """
    if mode not in CHECK_MODES:
        raise ValueError(f"mode must be one of {CHECK_MODES}. Received: mode={mode!r}")
    if mode == "none":
        return dataset
    workers = workers or min(8, os.cpu_count() or 1)
    paths = dataset.paths
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda p: check_image_file(p, mode, max_pixels), paths, chunksize=64)
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(paths), desc="checking images", unit="img")
        reasons = list(results)
    report = SkipReport(dataset.report.examples).extend(dataset.report)
    kept = []
    for record, reason in zip(dataset.records, reasons):
        if reason is None:
            kept.append(record)
        else:
            report.add(reason, record.path)
    return Dataset(kept, name=dataset.name, report=report)
