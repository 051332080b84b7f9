import numpy as np
import pytest

from visnet.data.records import Dataset, EmptyDatasetError, Record, SkipReport


def records():
    return [
        Record("a1.jpg", "a", split="train"),
        Record("a2.jpg", "a", split="test"),
        Record("b1.jpg", "b", id="B1", split="train"),
        Record("c1.jpg", "c", split="train"),
    ]


def test_record_defaults_and_split_check():
    assert Record("x.jpg", "a").id == "x.jpg"
    with pytest.raises(ValueError, match="split=.valid."):
        Record("x.jpg", "a", split="valid")


def test_dataset_columns_and_derivations():
    dataset = Dataset(records(), name="toy")
    assert dataset.classes == ["a", "b", "c"]
    np.testing.assert_array_equal(dataset.label_ids(), [0, 0, 1, 2])
    np.testing.assert_array_equal(dataset.label_ids(["c", "b", "a"]), [2, 2, 1, 0])
    assert dataset.class_counts() == {"a": 2, "b": 1, "c": 1}
    assert dataset.where(split="train").ids == ["a1.jpg", "B1", "c1.jpg"]
    assert dataset.where(labels=["b", "c"]).labels == ["b", "c"]
    assert dataset.select(["c1.jpg", "B1"]).labels == ["c", "b"]
    with pytest.raises(KeyError, match="1 id"):
        dataset.select(["B1", "zzz"])
    with pytest.raises(ValueError, match=r"not in the given classes: \['c'\]"):
        dataset.label_ids(["a", "b"])


def test_drop_small_classes_reports_what_it_drops():
    dataset = Dataset(records(), name="toy").drop_small_classes(2)
    assert dataset.labels == ["a", "a"]
    assert dataset.report.counts() == {"in a class with fewer than 2 images": 2}
    assert dataset.report.paths("in a class with fewer than 2 images") == ["b1.jpg", "c1.jpg"]


def test_empty_dataset_is_a_clear_error():
    report = SkipReport()
    report.add("missing file", "gone.jpg")
    with pytest.raises(EmptyDatasetError, match=r"(?s)No usable image records in toy \(skipped 1 .*gone.jpg"):
        Dataset([], name="toy", report=report)
    with pytest.raises(EmptyDatasetError):
        Dataset(records(), name="toy").where(split="query")


def test_skip_report_counts_and_keeps_examples():
    report = SkipReport(examples=2)
    for i in range(5):
        report.add("corrupt image", f"{i}.jpg")
    report.add("missing file", "m.jpg")
    assert report.total == 6
    assert report.counts() == {"corrupt image": 5, "missing file": 1}
    assert report.paths("corrupt image") == ["0.jpg", "1.jpg"]
    text = str(report)
    assert "5 corrupt image: 0.jpg, 1.jpg ..." in text and "1 missing file: m.jpg" in text
    merged = SkipReport().extend(report)
    assert merged.counts() == report.counts()
    assert str(SkipReport()) == "nothing skipped"
