import json
import os

import numpy as np
import pytest


def test_calibration_recovers_how_often_each_candidate_word_holds():
    from visnet.word_probe import calibrate, fit_calibration

    # Three words, all scored with the same log-odds 2 for every photo: word 0 holds on 80% of
    # photos, word 1 on 10% (a word that only named a class seen in training), word 2 on 50%.
    rng = np.random.default_rng(0)
    n = 4000
    logits = np.full((n, 3), 2.0) + rng.normal(0, 1e-3, (n, 3))
    targets = np.stack([rng.random(n) < p for p in (0.8, 0.1, 0.5)], axis=1).astype(np.float32)
    slope, bias = fit_calibration(logits, targets, candidates=3, c=1e4)
    probabilities = 1 / (1 + np.exp(-calibrate(logits, slope, bias)))
    np.testing.assert_allclose(probabilities.mean(axis=0), targets.mean(axis=0), atol=0.02)
    assert bias[0] > bias[2] > bias[1]


def test_calibration_keeps_the_order_the_probe_gives_within_a_word():
    from visnet.word_probe import fit_calibration

    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (3000, 4))
    targets = (rng.random((3000, 4)) < 1 / (1 + np.exp(-logits))).astype(np.float32)  # calibrated already
    slope, bias = fit_calibration(logits, targets, candidates=4, c=1e4)
    assert 0.85 < slope < 1.15 and np.all(np.abs(bias) < 0.2), (slope, bias)
    with pytest.raises(ValueError, match="both in and out"):
        fit_calibration(logits, np.zeros_like(targets), candidates=2)


def test_class_folds_partition_the_classes_and_name_too_few():
    from visnet.word_probe import class_folds

    labels = np.repeat(np.arange(7), 3)
    groups = class_folds(labels, 3, seed=5)
    assert len(groups) == 3 and sorted(np.concatenate(groups).tolist()) == list(range(7))
    assert [g.tolist() for g in class_folds(labels, 3, seed=5)] == [g.tolist() for g in groups]  # seeded
    with pytest.raises(ValueError, match="into 9 groups.*7 classes"):
        class_folds(labels, 9)
    with pytest.raises(ValueError, match="2 classes or more; these have 1"):
        class_folds(np.zeros(5), 2)


def test_out_of_class_scores_come_from_probes_that_never_saw_the_class():
    from visnet.word_probe import ProbeSettings, fit_probe, out_of_class_logits, probe_logits

    # Feature j is on for class j only; word j is named for class j only: a probe that saw the
    # class is sure of its word, one that did not has never seen the word named.
    labels = np.repeat(np.arange(4), 20)
    features = np.eye(4, dtype=np.float32)[labels] + np.random.default_rng(0).normal(0, 0.2, (80, 4))
    targets = np.eye(4, dtype=np.float32)[labels]
    settings = ProbeSettings(folds=4, epochs=20, l2=0.0, learning_rate=0.05)
    held_out = out_of_class_logits(features, targets, labels, settings)
    seen = probe_logits(features, fit_probe(features, targets, 0.0, 20, learning_rate=0.05))
    own = np.arange(80), labels
    held_mean, seen_mean = (np.bincount(labels, x[own]) / 20 for x in (held_out, seen))
    assert np.all(seen_mean > 0.5) and np.all(held_mean < 0) and np.all(seen_mean - held_mean > 1), (held_mean, seen_mean)


@pytest.fixture(scope="module")
def probe_dir(catalogue, tmp_path_factory):
    from visnet import word_probe

    out = str(tmp_path_factory.mktemp("probe"))
    code = word_probe.main(["--data", catalogue, "--out", out, "--backbone", "tiny", "--weights", "none",
                            "--image-size", "32x24", "--folds", "3", "--epochs", "5", "--learning-rate", "0.01",
                            "--no-progress"])
    assert code == 0
    return out


def test_word_probe_command_fits_saves_and_reports(probe_dir, capsys):
    from visnet.word_probe import WordProbe

    assert sorted(os.listdir(probe_dir)) == ["probe.json", "probe.keras", "vocabulary.json"]
    info = json.load(open(os.path.join(probe_dir, "probe.json")))
    assert info["photos"] == 108 and info["classes"] == 12 and info["skipped"] == 0
    check = info["out_of_class_precision_at_1"]
    assert set(check) == {"probe", "calibrated", "frequency_baseline"} and all(0 <= v <= 1 for v in check.values())
    assert len(info["calibration"]["word_bias"]) == info["vocabulary_size"]
    assert info["feature_layers"] == ["pool_block1_conv", "pool_block2_conv"]  # both blocks of `tiny`
    probe = WordProbe.load(probe_dir)
    assert probe.image_spec.height == 32 and probe.image_spec.width == 24
    assert {"dress", "bag", "striped"} <= set(probe.vocabulary.words)


def test_a_loaded_probe_tags_and_ranks_like_the_saved_one(probe_dir, catalogue, tmp_path):
    from visnet.data.pipeline import load_images, normalize_image
    from visnet.data.readers import load_dataset
    from visnet.word_probe import WordProbe

    probe = WordProbe.load(probe_dir)
    pixels, _ = load_images(load_dataset(catalogue).paths[:6], probe.image_spec)
    images = np.asarray(normalize_image(pixels.astype("float32"), probe.image_spec.normalization))
    logits = probe.logits(images)
    assert logits.shape == (6, len(probe.vocabulary))
    probe.save(str(tmp_path / "again"))
    np.testing.assert_allclose(WordProbe.load(str(tmp_path / "again")).logits(images), logits, rtol=1e-5, atol=1e-5)
    tags = probe.tag(logits, k=3)
    assert len(tags) == 6 and all(len(t) == 3 for t in tags)
    assert all(1 > t[0][1] >= t[1][1] >= t[2][1] > 0 for t in tags)
    bias = np.asarray(probe.info["calibration"]["word_bias"])
    np.testing.assert_allclose(probe.info["calibration"]["slope"] * probe.uncalibrated(logits) + bias, logits,
                               rtol=1e-4, atol=1e-4)
    scores = probe.text_scores("striped dress", logits)
    ids = probe.vocabulary.bag("striped dress")
    np.testing.assert_allclose(scores, np.log(1 / (1 + np.exp(-logits[:, ids]))).sum(axis=1), rtol=1e-5)
    with pytest.raises(ValueError, match="'qwerty'"):
        probe.text_scores("qwerty", logits)
    with pytest.raises(ValueError, match="k must be >= 1"):
        probe.tag(logits, k=0)
    with pytest.raises(ValueError, match="not a word probe directory"):
        WordProbe.load(str(tmp_path))


def test_tag_command_uses_a_probe_and_names_bad_input(probe_dir, catalogue, tmp_path, capsys):
    from helpers import write_text

    from visnet import tag
    from visnet.data.readers import load_dataset

    paths = load_dataset(catalogue).paths[:3]
    bad = write_text(tmp_path / "broken.jpg")
    assert tag.main(["--probe", probe_dir, "--top-k", "2", *paths, bad]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith(paths[0]) and lines[0].count("(") == 2
    assert "broken.jpg" in err
    assert tag.main(["--probe", probe_dir, "--query", "striped dress", *paths]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.strip().splitlines()] == ["1", "2", "3"]
    for bad_flags in (["--neighbours", "dress"], ["--no-prior", paths[0]], ["--run", probe_dir, paths[0]]):
        with pytest.raises(SystemExit):
            tag.main(["--probe", probe_dir, *bad_flags])
    assert tag.main(["--probe", str(tmp_path), paths[0]]) == 2
    assert "not a word probe directory" in capsys.readouterr().err


def test_word_probe_command_names_bad_settings_and_data(catalogue, tmp_path, capsys):
    from helpers import write_image

    from visnet import word_probe

    common = ["--data", catalogue, "--out", str(tmp_path / "p"), "--backbone", "tiny", "--weights", "none",
              "--image-size", "32x24", "--no-progress"]
    for flags in (["--folds", "1"], ["--blocks", "0"], ["--epochs", "0"], ["--learning-rate", "0"],
                  ["--min-word-count", "0"], ["--seed", "-1"], ["--calibration-c", "0"], ["--image-size", "big"],
                  ["--out", __file__]):
        with pytest.raises(SystemExit):
            word_probe.main(common + flags)
    assert word_probe.main(common + ["--folds", "13"]) == 2
    assert "13 groups" in capsys.readouterr().err
    from visnet.data.protocol import Protocol

    base = Protocol.load(os.path.join(catalogue, "protocol.json")).base_classes
    assert word_probe.main(common + ["--split", "open-set", "--folds", "3", "--epochs", "5",
                                          "--learning-rate", "0.01"]) == 0
    assert f"{9 * len(base)} photos of {len(base)} classes" in capsys.readouterr().out  # the base classes only
    folder = tmp_path / "photos"
    for label in ("a", "b", "c"):
        write_image(folder / label / "1.jpg")
    assert word_probe.main(["--data", str(folder), "--out", str(tmp_path / "q"), "--backbone", "tiny",
                            "--weights", "none", "--image-size", "32x24", "--no-progress"]) == 2
    assert "learns from text" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "q")


def test_split_records_names_a_bad_split(catalogue):
    from visnet.training.data import split_records

    assert len(split_records(catalogue, "all", progress=False)) == 108
    with pytest.raises(ValueError, match="split must be.*'train'"):
        split_records(catalogue, "train", progress=False)


def test_the_saved_model_is_the_probe_with_its_calibration_folded_in():
    import keras

    from visnet.word_probe import calibrated_model, probe_logits

    rng = np.random.default_rng(2)
    inputs = keras.Input((6,))
    features_model = keras.Model(inputs, keras.layers.Dense(5, name="features")(inputs))
    probe = (rng.normal(size=5), rng.uniform(0.5, 2.0, 5), rng.normal(size=(5, 3)), rng.normal(size=3))
    slope, bias = 1.3, rng.normal(size=3).astype(np.float32)
    model = calibrated_model(features_model, probe, slope, bias)
    x = rng.normal(size=(4, 6)).astype(np.float32)
    features = np.asarray(features_model.predict(x, verbose=0))
    np.testing.assert_allclose(np.asarray(model.predict(x, verbose=0)["words"]), slope * probe_logits(features, probe) + bias,
                               rtol=1e-4, atol=1e-4)


def test_photos_without_names_are_left_out_and_counted(catalogue):
    import dataclasses

    from visnet.data.readers import load_dataset
    from visnet.data.records import Dataset
    from visnet.word_probe import ProbeSettings, WordProbe

    dataset = load_dataset(catalogue)
    records = Dataset([dataclasses.replace(r, text=None) if i % 4 == 0 else r for i, r in enumerate(dataset)],
                      name="some unnamed")
    settings = ProbeSettings(backbone="tiny", weights="none", image_size=(32, 24), folds=3, epochs=5,
                             learning_rate=0.01)
    probe = WordProbe.fit(records, settings, progress=False)
    assert probe.info["without_names"] == 27 and probe.info["photos"] == 81 and probe.info["skipped"] == 0


def test_scores_that_rank_words_the_wrong_way_are_dropped_for_the_words_rates():
    from visnet.word_probe import fit_calibration

    rng = np.random.default_rng(4)
    logits = rng.normal(0, 2, (4000, 3))
    targets = (logits < 0).astype(np.float32)  # the higher the score, the less the word holds
    targets[:, 2] = rng.random(4000) < 0.2
    slope, bias = fit_calibration(logits, targets, candidates=3, c=1e4)
    assert slope == 0.0
    np.testing.assert_allclose(1 / (1 + np.exp(-bias)), targets.mean(axis=0), atol=0.01)


def test_an_unknown_backbone_fails_before_the_photos_are_read(catalogue, tmp_path, capsys):
    from visnet import word_probe

    assert word_probe.main(["--data", catalogue, "--out", str(tmp_path / "p"), "--backbone", "nope",
                            "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "checking images" not in err


def test_text_scores_add_the_imagenet_classes_query_words_name():
    from visnet.data.imagenet import ImageNetNames
    from visnet.data.text import TextTokenizer, Vocabulary
    from visnet.word_probe import text_score_matrix

    tokenizer = TextTokenizer(languages=("en",))
    vocabulary = Vocabulary.build(map(tokenizer, ["red dress", "blue dress", "red bag"]), min_count=1,
                                  tokenizer=tokenizer)
    names = ImageNetNames(["mailbag", "jean, blue jean", "sandal"], compounds=True)
    rng = np.random.default_rng(3)
    logits, imagenet = rng.normal(size=(5, len(vocabulary))), np.log(rng.dirichlet(np.ones(3), 5))
    texts = ["red jeans", "sandals bag", "blue dress", "jean jeans"]
    got = text_score_matrix(texts, logits, vocabulary, imagenet, names, weight=0.7)
    for i, text in enumerate(texts):  # by hand: the words' log-probabilities, then each named class set's, once
        expected = np.zeros(5)
        for token in set(tokenizer(text)):
            if token in vocabulary.words:
                expected += np.log(1 / (1 + np.exp(-logits[:, vocabulary.words.index(token)])))
        for classes in {names.classes(token) for token in tokenizer(text)} - {()}:
            expected += 0.7 * np.log(np.exp(imagenet[:, list(classes)]).sum(axis=1))
        np.testing.assert_allclose(got[i], expected, rtol=1e-6)
    np.testing.assert_allclose(got[3], 0.7 * imagenet[:, 1])  # `jean` and `jeans` name one class: counted once
    floor = imagenet.copy()
    floor[0, 1] = -np.inf  # a -inf log-probability ranks last, with no NaN
    low = text_score_matrix(["jeans"], logits, vocabulary, floor, names, weight=0.7)[0]
    assert np.isfinite(low).all() and low.argmin() == 0
    np.testing.assert_allclose(text_score_matrix(texts, logits, vocabulary, imagenet, names, weight=0.0),
                               text_score_matrix(texts, logits, vocabulary), rtol=1e-9)


def test_the_imagenet_weight_is_chosen_on_classes_the_probe_did_not_see():
    from visnet.data.imagenet import ImageNetNames
    from visnet.data.text import TextTokenizer, Vocabulary
    from visnet.word_probe import choose_imagenet_weight

    # Eight kinds of product whose names share only colours with the vocabulary; the kind's own word
    # names an ImageNet class, and the (fake) ImageNet classifier knows the kinds.
    kinds = ["sandal", "jean", "mailbag", "cardigan", "sombrero", "kimono", "bikini", "sweatshirt"]
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 30)
    texts = [f"{rng.choice(['red', 'blue', 'black'])} {kinds[y]}" for y in labels]
    tokenizer = TextTokenizer(languages=("en",))
    vocabulary = Vocabulary.build(map(tokenizer, ["red", "blue", "black"]), min_count=1, tokenizer=tokenizer)
    names = ImageNetNames(kinds, compounds=False)
    logits = rng.normal(size=(len(labels), len(vocabulary)))  # the probe's words tell nothing of the kind
    informative = np.log(np.full((len(labels), 8), 0.02) + 0.84 * np.eye(8)[labels])
    weight, recall = choose_imagenet_weight(logits, informative, texts, labels, vocabulary, names, folds=2)
    assert weight > 0 and recall[f"{weight:g}"] == 1.0 and recall["0"] < 0.5, recall
    uniform = np.full((len(labels), 8), np.log(1 / 8))  # a classifier that knows nothing: ties, so no weight
    weight, recall = choose_imagenet_weight(logits, uniform, texts, labels, vocabulary, names, folds=2)
    assert weight == 0 and len(set(recall.values())) == 1, recall
    unknown = ["qwerty"] * len(labels)  # no name has a word the probe or ImageNet knows: nothing to choose on
    assert choose_imagenet_weight(logits, informative, unknown, labels, vocabulary, names, folds=2) == (0.0, {})


@pytest.fixture(scope="module")
def imagenet_probe_dir(catalogue, tmp_path_factory):
    """A probe on `tiny` with a fake ImageNet classifier (random, 1,000 classes) and weight 1."""
    from visnet import backbones, word_probe

    kernel = np.random.default_rng(4).normal(0, 0.3, (16, 1000)).astype(np.float32)  # tiny ends with 16 channels
    out = str(tmp_path_factory.mktemp("probe-imagenet"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backbones, "imagenet_classifier", lambda name, weights: (kernel, np.zeros(1000, np.float32)))
        code = word_probe.main(["--data", catalogue, "--out", out, "--backbone", "tiny", "--weights", "none",
                                "--image-size", "32x24", "--folds", "3", "--epochs", "5", "--learning-rate", "0.01",
                                "--imagenet-weight", "1", "--no-progress"])
    assert code == 0
    return out


def test_a_probe_with_imagenet_classes_saves_them_and_searches_with_them(imagenet_probe_dir, catalogue, capsys):
    from visnet import tag
    from visnet.data.pipeline import load_images, normalize_image
    from visnet.data.readers import load_dataset
    from visnet.word_probe import IMAGENET_WEIGHTS, WordProbe

    probe = WordProbe.load(imagenet_probe_dir)
    info = probe.info["imagenet"]
    assert info["classes"] == 1000 and info["weight"] == 1.0 and not info["chosen"]
    assert set(info["out_of_class_text_recall_at_1"]) == {f"{w:g}" for w in IMAGENET_WEIGHTS}
    paths = load_dataset(catalogue).paths[:5]
    pixels, _ = load_images(paths, probe.image_spec)
    images = np.asarray(normalize_image(pixels.astype("float32"), probe.image_spec.normalization))
    scores = probe.scores(images)
    assert scores["words"].shape == (5, len(probe.vocabulary)) and scores["imagenet"].shape == (5, 1000)
    np.testing.assert_allclose(np.exp(scores["imagenet"]).sum(axis=1), 1.0, rtol=1e-4)  # log-probabilities
    np.testing.assert_allclose(probe.logits(images), scores["words"])
    mailbag = probe.imagenet_names.classes("mailbag")
    assert "mailbag" not in probe.vocabulary.words and mailbag
    np.testing.assert_allclose(probe.text_scores("mailbag", scores["words"], scores["imagenet"]),
                               np.logaddexp.reduce(scores["imagenet"][:, list(mailbag)], axis=1), rtol=1e-5)
    with pytest.raises(ValueError, match="'mailbag'"):  # without the images' ImageNet scores it knows no word
        probe.text_scores("mailbag", scores["words"])
    capsys.readouterr()
    assert tag.main(["--probe", imagenet_probe_dir, "--query", "mailbag", *paths]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.strip().splitlines()] == ["1", "2", "3", "4", "5"]
    assert tag.main(["--probe", imagenet_probe_dir, "--query", "qwerty", *paths]) == 2
    assert "'qwerty'" in capsys.readouterr().err


def test_a_probe_without_imagenet_classes_says_so(catalogue, probe_dir, tmp_path, capsys):
    from visnet import word_probe
    from visnet.word_probe import ProbeSettings

    assert json.load(open(os.path.join(probe_dir, "probe.json")))["imagenet"] is None
    assert word_probe.main(["--data", catalogue, "--out", str(tmp_path / "p"), "--backbone", "tiny", "--weights",
                            "none", "--image-size", "32x24", "--folds", "3", "--epochs", "2", "--no-progress"]) == 0
    assert "ImageNet classes in text search: none (the trunk has no ImageNet classifier)" in capsys.readouterr().out
    for bad in ("-1", "some", "inf", "nan"):
        with pytest.raises(SystemExit):
            word_probe.main(["--data", probe_dir, "--out", probe_dir, "--imagenet-weight", bad])
        assert "--imagenet-weight" in capsys.readouterr().err
    assert ProbeSettings(imagenet_weight="auto").imagenet_weight is None  # as `--option imagenet_weight=auto` gives it
    for bad in ({"imagenet_weight": float("inf")}, {"imagenet_weight": "x"}, {"imagenet_weight": True},
                {"imagenet_compounds": "yes"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ProbeSettings(**bad)


def test_a_probe_saved_before_the_imagenet_output_still_scores(probe_dir, tmp_path):
    import keras

    from visnet.word_probe import INFO_FILE, PROBE_FILE, WordProbe

    probe = WordProbe.load(probe_dir)
    words_only = keras.Model(probe.model.inputs, probe.model.outputs[0])  # one output, as earlier probes saved
    old = tmp_path / "old"
    probe.save(str(old))
    words_only.save(str(old / PROBE_FILE))
    info = json.load(open(old / INFO_FILE))
    del info["imagenet"]  # nor did their probe.json know of ImageNet classes
    json.dump(info, open(old / INFO_FILE, "w"))
    again = WordProbe.load(str(old))
    images = np.random.default_rng(0).uniform(0, 1, (2, 32, 24, 3)).astype("float32")
    assert list(again.scores(images)) == ["words"] and again.imagenet_names is None
    np.testing.assert_allclose(again.logits(images), probe.logits(images), rtol=1e-5, atol=1e-5)
    again.check_query("striped dress")
    assert again.text_scores("striped dress", again.logits(images)).shape == (2,)
