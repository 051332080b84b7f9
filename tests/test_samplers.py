from collections import Counter

import numpy as np
import pytest

from visnet.data.samplers import EpisodeSampler, PairSampler, PKSampler, TripletSampler, WordSampler

# 7 classes of uneven size; class "g" has a single image, "f" two.
LABELS = np.array(list("aaaaaaaabbbbbcccccdddddddeeefffg".replace("fff", "ff")))


def test_pk_batches_are_exactly_p_classes_times_k_images():
    sampler = PKSampler(LABELS, p=3, k=4, seed=0)
    assert len(sampler) == 3 and sampler.batch_size == 12
    for epoch in range(5):
        batches = sampler.epoch(epoch)
        assert batches.shape == (3, 12)
        for batch in batches:
            counts = Counter(LABELS[batch])
            assert len(counts) == 3 and set(counts.values()) == {4}
        assert set(LABELS[batches.ravel()]) == set(LABELS)  # every class, every epoch


def test_pk_draws_without_replacement_when_a_class_is_big_enough():
    sampler = PKSampler(LABELS, p=2, k=4, batches_per_epoch=20, seed=1)
    for batch in sampler.epoch(0):
        for label in set(LABELS[batch]):
            members = batch[LABELS[batch] == label]
            if (LABELS == label).sum() >= 4:
                assert len(set(members)) == 4
    # A class cycles through all its images before repeating one.
    a_draws = [i for batch in sampler.epoch(0) for i in batch if LABELS[i] == "a"]
    assert len(set(a_draws[:8])) == 8


def test_pk_is_deterministic_for_a_seed_and_varies_by_epoch():
    a, b = PKSampler(LABELS, 3, 2, seed=5), PKSampler(LABELS, 3, 2, seed=5)
    np.testing.assert_array_equal(a.epoch(3), b.epoch(3))
    assert not np.array_equal(a.epoch(0), a.epoch(1))
    assert not np.array_equal(a.epoch(0), PKSampler(LABELS, 3, 2, seed=6).epoch(0))
    np.testing.assert_array_equal(next(iter(a)), a.epoch(0)[0])


def test_pk_errors_name_the_values():
    with pytest.raises(ValueError, match="p=8 classes per batch, but the labels have only 7 classes"):
        PKSampler(LABELS, p=8, k=2)
    with pytest.raises(ValueError, match="p=0, k=2"):
        PKSampler(LABELS, p=0, k=2)
    with pytest.raises(ValueError, match="non-empty"):
        PKSampler([], p=1, k=1)


def test_pairs_respect_p_same_and_are_correct():
    sampler = PairSampler(LABELS, pairs_per_epoch=4000, p_same=0.4, seed=0)
    first, second, same = sampler.epoch(0)
    assert abs(same.mean() - 0.4) < 0.03
    np.testing.assert_array_equal(LABELS[first] == LABELS[second], same.astype(bool))
    assert np.all(first[same == 1] != second[same == 1])  # two different images
    assert "g" not in set(LABELS[first[same == 1]])  # a one-image class has no positive pair
    np.testing.assert_array_equal(sampler.epoch(2)[0], PairSampler(LABELS, 4000, 0.4, seed=0).epoch(2)[0])
    with pytest.raises(ValueError, match="p_same=1.5"):
        PairSampler(LABELS, 10, p_same=1.5)
    with pytest.raises(ValueError, match="every class has 1"):
        PairSampler(["a", "b"], 10, p_same=0.5)


def test_triplets_have_a_distinct_positive_and_a_foreign_negative():
    triplets = TripletSampler(LABELS, 500, seed=0).epoch(0)
    a, p, n = triplets.T
    assert np.all(LABELS[a] == LABELS[p]) and np.all(a != p)
    assert np.all(LABELS[a] != LABELS[n])
    assert set(LABELS[n]) == set(LABELS)  # negatives come from every class, "g" included
    with pytest.raises(ValueError, match="at least 2 classes"):
        TripletSampler(["a", "a"], 10)


def test_episodes_are_n_way_k_shot_with_distinct_images():
    sampler = EpisodeSampler(LABELS, ways=3, shots=2, queries=3, episodes=50, seed=0)
    eligible = {c for c, n in Counter(LABELS).items() if n >= 5}
    for episode in sampler:
        assert len(set(episode.classes)) == 3 and set(episode.classes) <= eligible
        assert len(episode.support) == 6 and len(episode.query) == 9
        assert len(set(episode.support) | set(episode.query)) == 15
        np.testing.assert_array_equal(episode.classes[episode.support_labels], LABELS[episode.support])
        np.testing.assert_array_equal(episode.classes[episode.query_labels], LABELS[episode.query])
    again = EpisodeSampler(LABELS, 3, 2, 3, 50, seed=0).episode(17)
    np.testing.assert_array_equal(again.query, sampler.episode(17).query)
    with pytest.raises(ValueError, match="need 5 classes with at least 6 images; only 2 of 7"):
        EpisodeSampler(LABELS, ways=5, shots=1, queries=5)


def _chi_square(counts: np.ndarray) -> float:
    expected = counts.sum() / len(counts)
    return float(((counts - expected) ** 2 / expected).sum())


def test_word_sampling_is_uniform_over_words_then_over_their_images():
    # Word 0 is in every image, word 9 in one: image-uniform sampling would give word 0 ~40x more.
    bags = [np.array([0] + [w for w in range(1, 10) if i % w == 0]) for i in range(1, 41)]
    bags.append(np.array([], np.int64))  # an image without words is never drawn
    sampler = WordSampler(bags, batch_size=50, batches_per_epoch=40, seed=3)
    images, words = sampler.epoch(0), sampler.targets(0)
    assert images.shape == words.shape == (40, 50)
    assert all(w in bags[i] for i, w in zip(images.ravel(), words.ravel()))
    assert 40 not in images
    word_counts = np.bincount(words.ravel(), minlength=10)
    # 2,000 draws over 10 words: chi-square with 9 degrees of freedom, p = 0.001 critical value 27.88.
    assert _chi_square(word_counts) < 27.88, word_counts
    holders = [i for i, b in enumerate(bags) if 2 in b]  # word 2: 20 images, about 200 draws
    image_counts = np.array([np.sum(images[words == 2] == i) for i in holders])
    assert _chi_square(image_counts) < 43.82  # 19 degrees of freedom, p = 0.001
    # The check can fail: image-uniform sampling would fail it by far.
    rng = np.random.default_rng(0)
    by_image = np.concatenate([rng.choice(bags[i], 1) for i in rng.integers(0, 40, 2000)])
    assert _chi_square(np.bincount(by_image, minlength=10)) > 1000


def test_word_sampler_is_deterministic_and_refuses_empty_bags():
    bags = [np.array([0, 1]), np.array([1, 2]), np.array([2])]
    a, b = WordSampler(bags, 4, 5, seed=1), WordSampler(bags, 4, 5, seed=1)
    np.testing.assert_array_equal(a.epoch(2), b.epoch(2))
    np.testing.assert_array_equal(a.targets(2), b.targets(2))
    assert not np.array_equal(a.targets(2), a.targets(3))
    assert len(WordSampler(bags, batch_size=2)) == 1
    with pytest.raises(ValueError, match="empty"):
        WordSampler([np.array([], np.int64)], 4)
    with pytest.raises(ValueError, match="batch_size=0"):
        WordSampler(bags, 0)


def test_word_power_one_draws_words_as_often_as_they_occur():
    # Word 0 is in all 40 images, word w in 40 // w of them: with power 1 draws follow those counts.
    bags = [np.array([0] + [w for w in range(1, 10) if i % w == 0]) for i in range(1, 41)]
    sampler = WordSampler(bags, batch_size=50, batches_per_epoch=40, seed=3, power=1.0)
    images, words = sampler.epoch(0), sampler.targets(0)
    assert all(w in bags[i] for i, w in zip(images.ravel(), words.ravel()))
    holders = np.array([sum(w in b for b in bags) for w in range(10)], np.float64)
    counts = np.bincount(words.ravel(), minlength=10)
    expected = holders / holders.sum() * counts.sum()
    assert np.sum((counts - expected) ** 2 / expected) < 27.88, counts  # 9 degrees of freedom, p = 0.001
    # ...which uniform word sampling fails by far.
    uniform = np.bincount(WordSampler(bags, 50, 40, seed=3).targets(0).ravel(), minlength=10)
    assert np.sum((uniform - expected) ** 2 / expected) > 1000
    # Power 0 is the uniform sampler, draw for draw.
    np.testing.assert_array_equal(WordSampler(bags, 50, 40, seed=3, power=0.0).targets(0),
                                  WordSampler(bags, 50, 40, seed=3).targets(0))
    for bad in (-0.5, 1.5):
        with pytest.raises(ValueError, match=f"power={bad}"):
            WordSampler(bags, 50, power=bad)
