import json

import pytest

from visnet.data.text import TextTokenizer, Vocabulary, normalize_text, stop_words


@pytest.fixture(scope="module")
def tokenizer():
    return TextTokenizer()


@pytest.mark.parametrize("text, words", [
    ("Navy Blue, striped cotton shirt!", ["navy", "blue", "striped", "cotton", "shirt"]),  # punctuation, case
    ("Robe d'été à fleurs", ["robe", "ete", "fleurs"]),  # French: accents, elision, stop words
    ("La jupe plissée est très belle", ["jupe", "plissee", "belle"]),
    ("This is one of the best dresses of the year", ["dresses"]),  # English stop words
    ("Nike Men T20 Cricket Jersey 2011 100%", ["nike", "men", "cricket", "jersey"]),  # numbers, mixed tokens
    ("Buy the new collection: T-shirt, size XL, 70 cm", ["tshirt"]),  # non-visual words, sizes, units
    ("Long-sleeve top", ["long", "sleeve", "top"]),  # garment words the generic stop lists hold
    ("Größe Straße café", ["grosse", "strasse", "cafe"]),  # non-ASCII letters
    ("东京 ÆON", ["东京", "æon"]),
    ("", []),
    ("   \t\n ", []),
    (None, []),
    ("!!! ... ---", []),
])
def test_tokenizer_cases(tokenizer, text, words):
    assert tokenizer(text) == words


def test_normalisation_and_stop_words_are_consistent():
    assert normalize_text("L’ÉTÉ—été") == "l ete ete"
    french = stop_words(["fr"])
    assert "tres" in french and "très" not in french  # stripped the way text is
    assert "top" not in stop_words(["en"]) and "the" in stop_words(["en"])
    with pytest.raises(ValueError, match="'xx'"):
        TextTokenizer(languages=("xx",))
    with pytest.raises(ValueError, match="min_length=0"):
        TextTokenizer(min_length=0)
    assert TextTokenizer(drop_words=())("size xl dress") == ["size", "xl", "dress"]


def test_vocabulary_keeps_the_most_frequent_words_and_round_trips(tmp_path, tokenizer):
    texts = ["red dress", "red striped dress", "blue dress", "blue shirt", "red shirt red", "green hat"]
    vocab = Vocabulary.build(map(tokenizer, texts), max_size=4, min_count=2, tokenizer=tokenizer)
    assert vocab.words == ["dress", "red", "blue", "shirt"]  # counts 3, 3 (once per text), 2, 2; ties by name
    assert vocab.counts.tolist() == [3, 3, 2, 2]
    assert vocab.bag("Red, red DRESS and a hat").tolist() == [0, 1]
    assert vocab.bag("").tolist() == []
    path = tmp_path / "vocabulary.json"
    vocab.save(str(path))
    loaded = Vocabulary.load(str(path))
    assert loaded.words == vocab.words and loaded.counts.tolist() == vocab.counts.tolist()
    assert loaded.tokenizer == tokenizer
    assert loaded.bag("blue striped shirt").tolist() == vocab.bag("blue striped shirt").tolist() == [2, 3]
    with pytest.raises(ValueError, match="empty"):
        Vocabulary.build([["a"], ["b"]], min_count=2)
    path.write_text(json.dumps({"words": []}))
    with pytest.raises(ValueError, match="not a visnet vocabulary"):
        Vocabulary.load(str(path))
