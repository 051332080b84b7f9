import numpy as np
import pytest

from visnet.evaluation.text import (
    frequency_scores,
    label_triplets,
    lexicon_triplets,
    tag_precision,
    text_recall,
    word_triplet_accuracy,
)


def test_tag_precision_by_hand():
    scores = np.array([[0.9, 0.1, 0.5, 0.0], [0.0, 0.2, 0.1, 0.8], [1, 1, 1, 1]])
    bags = [np.array([0, 1]), np.array([2]), np.array([], np.int64)]  # the third has no word: left out
    # Image 0 ranks 0, 2, 1, 3: @1 hit, @2 one of two. Image 1 ranks 3, 1, 2, 0: @1 miss, @2 none.
    assert tag_precision(scores, bags, ks=(1, 2, 3)) == {1: 0.5, 2: 0.25, 3: pytest.approx((2 / 3 + 1 / 3) / 2)}
    baseline = frequency_scores([5, 1, 3, 2], 2)
    assert baseline.shape == (2, 4) and tag_precision(baseline, bags[:2], ks=(1,)) == {1: 0.5}
    with pytest.raises(ValueError, match="one row per bag"):
        tag_precision(scores, bags[:2])
    with pytest.raises(ValueError, match="No image"):
        tag_precision(scores[:1], [np.array([], np.int64)])


def test_word_triplets_by_hand():
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    assert word_triplet_accuracy(vectors, np.array([[0, 1, 2], [0, 2, 1], [2, 1, 3]])) == pytest.approx(2 / 3)
    types = np.array([0, 0, 1, 1, -1, 2])
    triplets = lexicon_triplets(types, 50, seed=1)
    assert triplets.shape == (50, 3)
    for word, closer, farther in triplets:
        assert types[word] == types[closer] != types[farther] and word != closer and types[farther] >= 0
    assert 5 not in triplets[:, :2] and 4 not in triplets  # type 2 has one word; untyped words never
    with pytest.raises(ValueError, match="two lexicon types"):
        lexicon_triplets(np.array([0, 0, -1]), 5)
    with pytest.raises(ValueError, match="two lexicon types"):
        lexicon_triplets(np.array([0, 1, 2]), 5)  # no type with two words


def test_text_recall_by_hand():
    scores = np.array([[0.9, 0.8, 0.1], [0.1, 0.2, 0.3]])
    recall = text_recall(scores, ["dress", "bag"], ["shirt", "dress", "bag"], ks=(1, 2))
    assert recall == {1: 0.5, 2: 1.0}  # query 0 finds its dress 2nd; query 1 its bag 1st
    own = np.array([[False, False, False], [False, False, True]])  # the bag photo is query 1's own product
    assert text_recall(scores, ["dress", "bag"], ["shirt", "dress", "bag"], ks=(1, 2), exclude=own) == {1: 0.0, 2: 0.5}


def test_label_triplets_group_words_by_the_products_they_name():
    # Word 0 ("dial") names watches, 1 ("strap") mostly watches, 2 ("heels") heels, 3 ("black") both.
    bags = [np.array([0, 1, 3])] * 4 + [np.array([1, 2, 3])] + [np.array([2, 3])] * 4 + [np.array([4])]
    labels = ["watch"] * 4 + ["heel"] * 5 + ["bag"]
    triplets = label_triplets(bags, labels, 40, seed=0, min_count=2, purity=0.6)
    assert {tuple(sorted(t[:2])) for t in triplets} == {(0, 1)}  # only watches has two words
    assert set(triplets[:, 2]) == {2}  # heels: the only word of another label (black is everywhere)
    with pytest.raises(ValueError, match="two labels"):
        label_triplets(bags, labels, 5, min_count=5)  # no word occurs 5 times
