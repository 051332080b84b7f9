import json
import os

import keras
import numpy as np
import pytest
from helpers import check_model

from visnet.data.text import load_type_lexicon, word_types
from visnet.layers import WordScores
from visnet.losses import SampledSoftmaxLoss
from visnet.models import build, words_head


def _built(vocabulary_size=7, dim=5, types=1, **options):
    layer = WordScores(vocabulary_size, **options, types=types)
    layer.build(((None, types * dim), (None,)))
    return layer


def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("types", [1, 4])
def test_sampled_softmax_equals_the_full_softmax_when_every_word_is_sampled(types):
    rng = np.random.default_rng(0)
    layer = _built(types=types, negatives=7)
    embedding = rng.normal(size=(3, types * 5)).astype("float32")
    positive = np.array([2, 0, 6])
    every_word = np.tile(np.arange(7), (3, 1))  # holds the positive too: that copy is masked
    logits = np.asarray(layer.sampled_logits(embedding, positive, every_word))
    sampled = float(SampledSoftmaxLoss(negatives=7, scale=16.0)(np.zeros(3), logits))
    full = 16.0 * np.asarray(layer.scores(embedding))
    expected = -np.mean(_log_softmax(full.astype(np.float64))[np.arange(3), positive])
    assert sampled == pytest.approx(expected, rel=1e-5)
    assert np.all(logits[np.arange(3), 1 + positive] < -1e8)  # the accidental hits


def test_pseudo_attention_scores_each_word_with_its_own_type_distribution(tmp_path):
    rng = np.random.default_rng(1)
    layer = _built(vocabulary_size=6, dim=3, types=4, negatives=5)
    embedding = rng.normal(size=(2, 12)).astype("float32")
    words = np.asarray(layer.words)
    p = np.asarray(layer.type_distribution(words))
    assert p.shape == (6, 4)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    sub = embedding.reshape(2, 4, 3)
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    # Cosines of each word with each type sub-vector, weighted by the word's type distribution.
    expected = np.array([[sum(p[k, t] * unit(sub[b, t]) @ unit(words[k]) for t in range(4)) for k in range(6)]
                         for b in range(2)])
    np.testing.assert_allclose(np.asarray(layer.scores(embedding)), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(layer.score_ids(embedding, np.array([[5, 0], [1, 1]]))),
                               expected[[[0, 0], [1, 1]], [[5, 0], [1, 1]]], rtol=1e-4, atol=1e-6)
    # Serialization: config round trip; a saved training model restores word vectors and lexicon types.
    assert WordScores.from_config(layer.get_config()).get_config() == layer.get_config()
    model = build("weakly", input_shape=(16, 12, 3), backbone="tiny", embedding_dim=3, types=4)
    training = words_head(model, 6, negatives=3, types=4, word_types=[0, 1, -1, 2, 3, -1])
    assert training.output.shape == (None, 4)
    path = str(tmp_path / "weakly.keras")
    training.save(path)
    restored = keras.models.load_model(path, compile=False)
    np.testing.assert_array_equal(np.asarray(restored.get_layer("word_scores").word_types), [0, 1, -1, 2, 3, -1])
    x = rng.uniform(size=(2, 16, 12, 3)).astype("float32")
    original_head, restored_head = training.get_layer("word_scores"), restored.get_layer("word_scores")
    e = np.asarray(keras.Model(training.inputs[0], training.get_layer("embedding").output)(x))
    np.testing.assert_allclose(np.asarray(restored_head.scores(e)), np.asarray(original_head.scores(e)), rtol=1e-5)
    # The type head is trained: its loss is added in training calls.
    restored([x, np.array([0, 2])])
    assert len(restored.losses) == 1 and float(restored.losses[0]) > 0


def test_negatives_are_uniform_or_close_to_the_positive():
    layer = _built(vocabulary_size=30, dim=2, negatives=6, close_negatives=3, close_pool=5)
    angles = np.linspace(0, np.pi / 2, 30)  # word i's nearest words are its index neighbours
    layer.words.assign(np.stack([np.cos(angles), np.sin(angles)], axis=1).astype("float32"))
    negatives = np.asarray(layer.sample_negatives(np.array([0, 15, 15, 29])))
    assert negatives.shape == (4, 6) and negatives.min() >= 0 and negatives.max() < 30
    nearest = {0: {1, 2, 3, 4, 5}, 15: {13, 14, 16, 17, 12, 18}, 29: {24, 25, 26, 27, 28}}
    for row, positive in zip(negatives, [0, 15, 15, 29]):
        assert len(set(row[:3])) == 3 and set(row[:3]) <= nearest[positive], row
    many = np.asarray(_built(vocabulary_size=30, negatives=50).sample_negatives(np.zeros(200, np.int32)))
    assert len(np.unique(many)) == 30  # uniform draws reach every word
    with pytest.raises(ValueError, match="close_negatives=4"):
        WordScores(30, negatives=3, close_negatives=4)
    with pytest.raises(ValueError, match="vocabulary_size=1"):
        WordScores(1)


def test_weakly_embeddings_are_unit_vectors(tmp_path):
    for types in (1, 4):
        model = build("weakly", input_shape=(16, 12, 3), backbone="tiny", embedding_dim=8, types=types)
        check_model(model, (16, 12, 3), (8 * types,), tmp_path)
        e = model.predict(np.random.default_rng(0).uniform(size=(3, 16, 12, 3)).astype("float32"), verbose=0)
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, rtol=1e-5)
    with pytest.raises(ValueError, match="types=0"):
        build("weakly", input_shape=(16, 12, 3), backbone="tiny", types=0)


def test_the_shipped_lexicon_types_words():
    from visnet.data.text import Vocabulary

    types, lexicon = load_type_lexicon()
    assert types == ["clothing", "colour", "texture", "style"]
    assert lexicon["dress"] == 0 and lexicon["navy"] == 1 and lexicon["striped"] == 2 and lexicon["casual"] == 3
    assert lexicon["rouge"] == 1 and lexicon["jupe"] == 0
    vocab = Vocabulary(["red", "zebra", "qwerty"], [3, 2, 1])
    assert word_types(vocab, lexicon).tolist() == [1, 2, -1]


@pytest.mark.slow
def test_tags_of_a_tiny_run_beat_the_frequency_baseline(weak_run, catalogue):
    from visnet.data.pipeline import load_images
    from visnet.data.readers import load_dataset
    from visnet.evaluation.text import frequency_scores, tag_precision

    words = weak_run.word_model("last")
    vocabulary = weak_run.vocabulary()
    assert {"dress", "bag", "striped"} <= set(vocabulary.words)
    history = json.load(open(os.path.join(weak_run.path, "state.json")))["history"]
    assert len(history) == 10 and history[-1]["loss"] < history[0]["loss"]
    assert {"val_mAP", "val_recall@1"} <= set(history[-1])  # retrieval validation of the image embedding
    dataset = load_dataset(catalogue)
    images, kept = load_images(dataset.paths, weak_run.image_spec)
    from visnet.data.pipeline import normalize_image

    x = np.asarray(normalize_image(images.astype("float32"), weak_run.image_spec.normalization))
    bags = vocabulary.bags(dataset[i].text for i in kept)
    learned = tag_precision(words.tag_scores(words.embed(x)), bags, ks=(1, 5))
    baseline = tag_precision(frequency_scores(vocabulary.counts, len(bags)), bags, ks=(1, 5))
    assert learned[5] > baseline[5] + 0.05, (learned, baseline)
    tags = words.tag(words.embed(x[:2]), k=3)
    assert len(tags) == 2 and len(tags[0]) == 3 and 1 >= tags[0][0][1] >= tags[0][1][1] > 0
    assert len(words.neighbours("dress", k=3)) == 3
    scores = words.text_scores("striped dress", words.embed(x))
    assert scores.shape == (len(x),)
    with pytest.raises(ValueError, match="'qwerty'"):
        words.text_scores("qwerty", x[:1])


@pytest.mark.slow
def test_tag_command_tags_ranks_and_names_bad_input(weak_run, catalogue, tmp_path, capsys):
    from helpers import write_text

    from visnet import tag
    from visnet.data.readers import load_dataset

    paths = load_dataset(catalogue).paths[:3]
    bad = write_text(tmp_path / "broken.jpg")
    assert tag.main(["--run", weak_run.path, "--checkpoint", "last", "--top-k", "2", *paths, bad]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith(paths[0]) and lines[0].count("(") == 2
    assert "skipped" in err and "broken.jpg" in err
    assert tag.main(["--run", weak_run.path, "--query", "striped dress", *paths]) == 0
    ranked = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in ranked] == ["1", "2", "3"]
    assert tag.main(["--run", weak_run.path, "--neighbours", "dress", "--top-k", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert tag.main(["--run", weak_run.path, "--query", "qwerty", *paths]) == 2
    assert "'qwerty'" in capsys.readouterr().err
    assert tag.main(["--run", weak_run.path, bad]) == 1
    with pytest.raises(SystemExit):
        tag.main(["--run", weak_run.path])  # nothing to do


@pytest.mark.slow
def test_pseudo_attention_with_close_negatives_trains_and_resumes(catalogue, tmp_path):
    from visnet.training.callbacks import load_state
    from visnet.training.config import TrainConfig
    from visnet.training.trainer import resolve_loss, train

    config = TrainConfig(arch="weakly", data=catalogue, out=str(tmp_path / "typed"), image_size=(32, 24),
                         backbone="tiny", embedding_dim=8, arch_options={"types": 4}, negatives=6, close_negatives=2,
                         batch_size=16, val="none", epochs=3, steps_per_epoch=3, freeze_epochs=1, augment=False)
    config.epochs = 2  # stop after the frozen epoch and one more, then resume to 3
    train(config, progress=False)
    config.epochs = 3
    run = train(config, resume=True, progress=False)
    assert load_state(run.path)["epochs_done"] == 3
    words = run.word_model("last")
    assert words.head.types == 4 and words.embedding_model.output.shape == (None, 32)
    typed = np.asarray(words.head.word_types)
    vocabulary = run.vocabulary()
    assert typed[vocabulary.index["dress"]] == 0 and typed[vocabulary.index["striped"]] == 2
    assert words.embedding_model.get_layer("backbone").trainable  # unfrozen after epoch 1
    with pytest.raises(ValueError, match="sampled-softmax loss trains the word head"):
        resolve_loss(TrainConfig(arch="siamese", data="x", loss="sampled-softmax"))
    with pytest.raises(ValueError, match="trains with the sampled-softmax loss"):
        resolve_loss(TrainConfig(arch="weakly", data="x", loss="triplet"))
    with pytest.raises(ValueError, match="freeze_epochs must be in"):
        TrainConfig(data="x", epochs=2, freeze_epochs=2).validate()


def test_full_rank_embedding_is_the_pooled_trunk(tmp_path):
    model = build("weakly", input_shape=(16, 12, 3), backbone="tiny", backbone_options={"width": 4},
                  embedding_dim=None)
    check_model(model, (16, 12, 3), (8,), tmp_path)  # tiny's last block has 2 x width channels
    with pytest.raises(ValueError, match="embedding_dim must be >= 1 with types > 1"):
        build("weakly", input_shape=(16, 12, 3), backbone="tiny", embedding_dim=None, types=4)


def test_text_settings_choose_columns_languages_and_dropped_words(catalogue):
    from visnet import train as train_cli
    from visnet.training.config import TrainConfig
    from visnet.training.data import read_training_data, run_vocabulary

    config = TrainConfig(arch="weakly", data=catalogue, out="x", val="none", text_columns=["shape", "colour"],
                         drop_words=["bag"], min_word_count=1)
    records = read_training_data(config, progress=False).train
    vocabulary = run_vocabulary(config, records)
    assert {"dress", "tshirt"} <= set(vocabulary.words) and "bag" not in vocabulary  # shape column; dropped word
    assert not {"striped", "cotton"} & set(vocabulary.words)  # the texture and material are in `text` only
    args = train_cli.build_parser().parse_args(["--arch", "weakly", "--data", catalogue, "--out", "x", "--text-columns",
                                                "text,colour", "--drop-words", "acme", "--text-languages", "en"])
    parsed = train_cli.config_from_args(args)
    assert parsed.text_columns == ["text", "colour"] and parsed.drop_words == ["acme"] and parsed.text_languages == ["en"]
    assert train_cli.main(["--arch", "weakly", "--data", catalogue, "--out", "/tmp/never", "--text-languages", "xx"]) == 2


@pytest.mark.slow
def test_a_weak_run_evaluates_like_any_embedder(weak_run, catalogue, capsys):
    from visnet import evaluate

    assert evaluate.main(["--run", weak_run.path, "--checkpoint", "last", "--data", catalogue, "--no-progress"]) == 0
    assert "mAP" in capsys.readouterr().out


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_tag_prior_puts_back_what_word_sampling_took_out(power):
    # Words drawn in proportion to count ** power leave a factor count ** (power - 1) in what the
    # head learns: the prior adds (1 - power) * log count, and nothing at power 1.
    from visnet.data.text import Vocabulary
    from visnet.layers import WordScores
    from visnet.tagging import WordModel

    vocabulary = Vocabulary(["red", "dress", "men"], [3, 20, 400])
    head = WordScores(3, negatives=1)
    head.build((None, 4))
    words = WordModel(None, head, vocabulary, None, scale=8.0, word_power=power)
    embeddings = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    plain = words.tag_scores(embeddings, prior=False)
    np.testing.assert_allclose(plain, 8.0 * np.asarray(head.scores(embeddings)), rtol=1e-6)
    np.testing.assert_allclose(words.tag_scores(embeddings) - plain,
                               np.tile((1 - power) * np.log([3, 20, 400]), (5, 1)), rtol=1e-5, atol=1e-5)


def test_word_power_reaches_the_sampler_and_is_checked():
    from visnet.training.config import TrainConfig
    from visnet.training.data import make_sampler

    bags = [np.array([0, 1]), np.array([1, 2]), np.array([2])]
    config = TrainConfig(arch="weakly", data="x", out="y", batch_size=2, word_power=0.5)
    sampler = make_sampler(config, {"name": "sampled-softmax"}, np.zeros(3), seed=0, bags=bags)
    assert sampler.power == 0.5
    with pytest.raises(ValueError, match="word_power=2"):
        TrainConfig(arch="weakly", data="x", out="y", word_power=2).validate()
