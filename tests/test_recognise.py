"""`python -m visnet.recognise`: new articles recognised from a few labelled photos each."""

import csv
import os

import numpy as np
import pytest
from PIL import Image

from visnet import recognise

COLOURS = {"red-scarf": (200, 30, 30), "green-cap": (30, 170, 40), "blue-bag": (30, 40, 190)}


def _photo(path, colour, seed):
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 25, (48, 36, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture()
def shop(tmp_path):
    """support/<article>/ with three photos each, and uploads/ with two new photos per article plus junk."""
    support, uploads = tmp_path / "support", tmp_path / "uploads"
    for n, (article, colour) in enumerate(COLOURS.items()):
        (support / article).mkdir(parents=True)
        for i in range(3):
            _photo(support / article / f"{i}.png", colour, 10 * n + i)
    uploads.mkdir()
    for n, (article, colour) in enumerate(COLOURS.items()):
        for i in range(2):
            _photo(uploads / f"{article}-{i}.jpg", colour, 100 + 10 * n + i)
    (uploads / "broken.jpg").write_bytes(b"not a jpeg at all")
    (uploads / "notes.txt").write_text("not a photo")
    return str(support), str(uploads)


def test_recognise_scores_are_the_classifier_posteriors():
    rng = np.random.default_rng(0)
    support, labels, photos = rng.normal(size=(6, 4)), np.array(["b", "a", "b", "a", "c", "c"]), rng.normal(size=(3, 4))
    top = recognise.recognise(support, labels, photos, "prototype", top_k=3)
    means = np.stack([support[labels == c].mean(axis=0) for c in "abc"])
    distances = np.linalg.norm(photos[:, None] - means[None], axis=2)
    expected = np.exp(-distances) / np.exp(-distances).sum(axis=1, keepdims=True)
    for row, scores in zip(top, expected):
        assert [label for label, _ in row] == [("a", "b", "c")[j] for j in np.argsort(-scores)]
        np.testing.assert_allclose([s for _, s in row], np.sort(scores)[::-1], rtol=1e-9)
    with pytest.raises(ValueError, match=r"at least two articles to tell apart. Received: \['a'\]"):
        recognise.recognise(support[:2], ["a", "a"], photos)


@pytest.mark.parametrize("classifier", ["prototype", "soft-kmeans", "1nn"])
def test_every_upload_is_recognised_and_junk_is_skipped_and_counted(shop, tmp_path, capsys, classifier):
    support, uploads = shop
    out = str(tmp_path / "out" / "predictions.csv")
    code = recognise.main(["--support", support, "--photos", uploads, "--embedder", "pixels", "--classifier",
                           classifier, "--top-k", "2", "--out", out, "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = list(csv.reader(open(out)))
    assert rows[0] == ["photo", "label_1", "score_1", "label_2", "score_2"]
    assert len(rows) == 7  # six photos; the broken JPEG and the text file are not among them
    for row in rows[1:]:
        assert os.path.basename(row[0]).rsplit("-", 1)[0] == row[1], row
        assert 1 >= float(row[2]) >= float(row[4]) >= 0
    assert "not an image file name" in captured.err and "broken.jpg" in captured.err
    assert "blue-bag-0.jpg\tblue-bag" in captured.out


def test_image_arguments_and_a_run(catalogue, siamese_run, capsys):
    """With a trained run and the catalogue as support, a catalogue photo's nearest support photo is itself."""
    from visnet.data.readers import load_dataset

    dataset = load_dataset(catalogue, check="none")
    picked = [dataset[i] for i in (0, 40, 80)]
    code = recognise.main(["--support", catalogue, "--run", siamese_run.path, "--classifier", "1nn", "--top-k", "1",
                           "--no-progress", *[r.path for r in picked]])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert [line.split("\t")[1].split()[0] for line in lines] == [r.label for r in picked]


def test_errors_name_the_bad_value(shop, tmp_path, capsys):
    support, uploads = shop
    base = ["--support", support, "--embedder", "pixels", "--no-progress"]
    assert recognise.main([*base, "--photos", uploads, "--classifier", "svm"]) == 2
    assert "Unknown few-shot classifier: 'svm'" in capsys.readouterr().err
    assert recognise.main([*base, "--photos", uploads, "--top-k", "0"]) == 2
    assert "--top-k must be >= 1. Received: 0" in capsys.readouterr().err
    assert recognise.main(base) == 2
    assert "No photos to recognise" in capsys.readouterr().err
    assert recognise.main([*base, os.path.join(uploads, "broken.jpg")]) == 2
    assert "No usable image records in photos" in capsys.readouterr().err
    assert recognise.main([*base, "--photos", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    one = tmp_path / "one"
    (one / "red-scarf").mkdir(parents=True)
    _photo(one / "red-scarf" / "0.png", COLOURS["red-scarf"], 0)
    assert recognise.main(["--support", str(one), "--embedder", "pixels", "--no-progress", "--photos", uploads]) == 2
    assert "at least two articles" in capsys.readouterr().err
    assert recognise.main([*base, "--photos", uploads, "--out", str(tmp_path)]) == 2
    assert "--out must be a file, not a directory" in capsys.readouterr().err
