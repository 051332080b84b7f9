import numpy as np
import pytest
from helpers import write_image, write_truncated_jpeg

from visnet.data.image_spec import ImageSpec
from visnet.data.records import Dataset, Record
from visnet.evaluation.embedding import embed_dataset


def mean_colour(images):
    return images.mean(axis=(1, 2))


def test_any_function_embeds_and_undecodable_files_are_reported(tmp_path):
    records = [
        Record(write_image(tmp_path / "a.png", colour=(255, 0, 0)), "a"),
        Record(write_truncated_jpeg(tmp_path / "b.jpg"), "b"),  # not checked beforehand on purpose
        Record(write_image(tmp_path / "c.png", colour=(0, 0, 255)), "c"),
    ]
    kept, vectors = embed_dataset(mean_colour, Dataset(records), ImageSpec(8, 8, resize="stretch"), batch_size=2, progress=False)
    assert kept.labels == ["a", "c"]
    np.testing.assert_allclose(vectors, [[255, 0, 0], [0, 0, 255]])
    assert kept.report.counts() == {"failed to decode": 1}


def test_embedder_output_shape_is_checked(tmp_path):
    dataset = Dataset([Record(write_image(tmp_path / "a.png"), "a")])
    with pytest.raises(ValueError, match=r"returned shape \(3,\) for a batch of 1 images"):
        embed_dataset(lambda x: np.zeros(3), dataset, ImageSpec(8, 8), progress=False)
    with pytest.raises(ValueError, match="needs an ImageSpec"):
        embed_dataset(mean_colour, dataset, progress=False)
