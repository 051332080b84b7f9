import os

import numpy as np
import pytest
from PIL import Image

from visnet.data.catalogue import describe, generate_catalogue, main
from visnet.data.protocol import Protocol
from visnet.data.readers import load_dataset


def test_catalogue_layout_and_labels(catalogue):
    dataset = load_dataset(catalogue)
    assert len(dataset) == 3 * 4 * 3 * 3
    assert dataset.class_counts() == {label: 9 for label in dataset.classes}
    assert "striped dress" in dataset.classes and "bag" in dataset.classes
    record = dataset.select(["dress-striped-000-1"])[0]
    assert record.label == "striped dress"
    assert record.text.startswith(record.meta["colour"]) and record.text.endswith("striped " + record.text.split()[-2] + " dress")
    image = np.asarray(Image.open(record.path))
    assert image.shape == (64, 48, 3) and image.std() > 10
    protocol = Protocol.load(os.path.join(catalogue, "protocol.json"))
    assert protocol.image_size_hw == (64, 48)
    assert len(protocol.novel_classes) == 5 and protocol.episodes.ways == (5,)


def test_photos_of_an_article_differ_but_look_alike(catalogue):
    dataset = load_dataset(catalogue)
    photos = [np.asarray(Image.open(r.path), np.float32) for r in dataset if r.item_id == "bag-dotted-001"]
    other = np.asarray(Image.open(dataset.select(["t-shirt-plain-002-0"])[0].path), np.float32)
    assert len(photos) == 3
    assert not np.array_equal(photos[0], photos[1])
    assert np.abs(photos[0] - photos[1]).mean() < np.abs(photos[0] - other).mean()


def test_same_seed_same_catalogue(tmp_path):
    a = generate_catalogue(str(tmp_path / "a"), articles_per_type=1, photos=2, size=(32, 24),
                           shapes=("skirt", "bag"), textures=("plain", "checked", "striped"), image_format="png", seed=3)
    b = generate_catalogue(str(tmp_path / "b"), articles_per_type=1, photos=2, size=(32, 24),
                           shapes=("skirt", "bag"), textures=("plain", "checked", "striped"), image_format="png", seed=3)
    assert a.ids == b.ids and a.texts == b.texts
    for x, y in zip(a.paths, b.paths):
        np.testing.assert_array_equal(np.asarray(Image.open(x)), np.asarray(Image.open(y)))


def test_descriptions():
    assert describe("dress", "striped", "red", "cotton") == "red striped cotton dress"
    assert describe("bag", "plain", "black", "leather") == "black leather bag"


def test_bad_arguments_are_clear_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"Unknown shapes/textures: \['hat'\]"):
        generate_catalogue(str(tmp_path), shapes=("hat",))
    with pytest.raises(ValueError, match="1 shapes x 2 textures make 2"):
        generate_catalogue(str(tmp_path / "small"), shapes=("bag",), textures=("plain", "dotted"))
    assert not os.path.exists(tmp_path / "small")
    small = generate_catalogue(str(tmp_path / "noprotocol"), articles_per_type=1, photos=1, shapes=("bag",),
                               textures=("plain",), write_protocol=False)
    assert len(small) == 1 and not os.path.exists(tmp_path / "noprotocol" / "protocol.json")
    assert main(["--out", str(tmp_path / "c"), "--image-size", "big"]) == 2
    assert "HEIGHTxWIDTH" in capsys.readouterr().err
