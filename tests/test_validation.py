import os

import pytest
from helpers import write_empty, write_image, write_text, write_truncated_jpeg

from visnet.data.records import Dataset, Record
from visnet.data.validation import check_image_file, check_images


@pytest.fixture
def files(tmp_path):
    d = tmp_path
    return {
        "good_jpeg": write_image(d / "good.jpg", fmt="JPEG"),
        "good_png_rgba": write_image(d / "rgba.png", mode="RGBA"),
        "good_grey": write_image(d / "grey.png", mode="L"),
        "truncated": write_truncated_jpeg(d / "truncated.jpg"),
        "empty": write_empty(d / "empty.jpg"),
        "text": write_text(d / "text.jpg"),
        "missing": str(d / "missing.jpg"),
        "tiff": write_image(d / "image.jpg", fmt="TIFF"),
        "big": write_image(d / "big.png", size=(100, 100)),
    }


def test_each_bad_file_gets_its_reason(files):
    assert check_image_file(files["good_jpeg"]) is None
    assert check_image_file(files["good_png_rgba"]) is None
    assert check_image_file(files["good_grey"]) is None
    assert check_image_file(files["truncated"]) == "corrupt image"
    assert check_image_file(files["empty"]) == "empty file"
    assert check_image_file(files["text"]) == "not an image"
    assert check_image_file(files["missing"]) == "missing file"
    assert check_image_file(files["tiff"]) == "unsupported image format (TIFF)"
    assert check_image_file(files["big"], max_pixels=5000) == "image too large (more than 5000 pixels)"
    assert check_image_file(os.path.dirname(files["big"])) == "not a file"


def test_header_mode_misses_truncation_but_decode_catches_it(files):
    assert check_image_file(files["truncated"], mode="header") is None
    assert check_image_file(files["text"], mode="exists") is None
    assert check_image_file(files["missing"], mode="exists") == "missing file"
    assert check_image_file(files["missing"], mode="none") is None
    with pytest.raises(ValueError, match="mode='pixels'"):
        check_image_file(files["good_jpeg"], mode="pixels")


def test_check_images_skips_counts_and_reports(files):
    dataset = Dataset([Record(p, name) for name, p in files.items()], name="mixed")
    checked = check_images(dataset, max_pixels=5000)
    assert sorted(checked.labels) == ["good_grey", "good_jpeg", "good_png_rgba"]
    counts = checked.report.counts()
    assert counts == {
        "corrupt image": 1, "empty file": 1, "not an image": 1, "missing file": 1,
        "unsupported image format (TIFF)": 1, "image too large (more than 5000 pixels)": 1,
    }
    assert checked.report.paths("not an image") == [files["text"]]
    assert check_images(dataset, mode="none") is dataset


def test_phone_jpegs_reported_as_mpo_are_accepted(tmp_path):
    from PIL import Image

    frames = [Image.new("RGB", (16, 12), colour) for colour in ("red", "blue")]
    path = str(tmp_path / "phone.jpg")
    frames[0].save(path, format="MPO", save_all=True, append_images=frames[1:])
    assert Image.open(path).format == "MPO"
    assert check_image_file(path) is None
