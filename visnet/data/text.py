"""Catalogue text -> bags of words: normalise, tokenise (NLTK), drop stop and non-visual words, vocabulary.

Product names and descriptions ("Navy striped cotton shirt", "Robe d'été à fleurs") are weak
labels for the image-text model. The same `TextTokenizer` runs when the vocabulary is built,
when a run is trained and when a served model reads a text query, so a word always maps to the
same id.

    tokenizer = TextTokenizer()
    tokenizer("Robe d'été à fleurs, taille XL")      # ['robe', 'ete', 'fleurs']
    vocab = Vocabulary.build(map(tokenizer, texts), max_size=30_000, min_count=2, tokenizer=tokenizer)
    vocab.bag("navy striped shirt")                  # sorted unique word ids
    vocab.save("vocabulary.json"); Vocabulary.load("vocabulary.json")

Stop words come from the `stop-words` package (English and French by default; `nltk.download`
is not needed), with the accents stripped as the text's are. Its English list is a generic one
that also removes words that describe garments ("top", "long", "round", "high", "men"); those
are kept (`FASHION_WORDS`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

# Words the generic stop lists remove but that say what a garment looks like.
FASHION_WORDS = frozenset(
    "top tops long short back front full small big large round high low open side half line point pointed "
    "men man women woman little over under down up cross right left haut bas ete".split())  # ete: summer (été)

# Frequent catalogue words that say nothing about the picture: shop talk, sizes, units.
NON_VISUAL_WORDS = (
    "buy shop online sale new collection free shipping delivery price offer discount official brand product "
    "item items pack set pcs piece pieces size sizes xxs xs xl xxl xxxl cm mm inch inches kg ml "
    "acheter achat boutique soldes nouveau nouvelle nouveaute livraison gratuite prix taille tailles"
).split()

_ONE_LETTER_PREFIX = re.compile(r"\b(\w)-(?=\w)")  # t-shirt -> tshirt, v-neck -> vneck
_NOT_WORD = re.compile(r"[^\w\s]|_")


def strip_accents(text: str) -> str:
    """`Été à Zürich` -> `Ete a Zurich` (compatibility decomposition, combining marks dropped)."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def normalize_text(text: str) -> str:
    """Case-folds, strips accents, joins one-letter prefixes (`t-shirt` -> `tshirt`) and turns other
    punctuation into spaces (`d'été` -> `d ete`, `long-sleeve` -> `long sleeve`)."""
    text = strip_accents(text.casefold())
    text = _ONE_LETTER_PREFIX.sub(r"\1", text)
    return _NOT_WORD.sub(" ", text)


def stop_words(languages: Sequence[str]) -> frozenset[str]:
    """The `stop-words` package's lists for `languages`, normalised like text, minus `FASHION_WORDS`."""
    from stop_words import AVAILABLE_LANGUAGES, LANGUAGE_MAPPING, get_stop_words

    words: set[str] = set()
    for language in languages:
        if language not in AVAILABLE_LANGUAGES and language not in LANGUAGE_MAPPING:
            raise ValueError(f"No stop-word list for language {language!r}. Available: "
                             f"{sorted(LANGUAGE_MAPPING)}")
        for word in get_stop_words(language):
            words.update(normalize_text(word).split())
    return frozenset(words - FASHION_WORDS)


@dataclasses.dataclass(frozen=True)
class TextTokenizer:
    """Text -> list of words: `normalize_text`, NLTK `RegexpTokenizer(r"\\w+")`, then drops stop
    words, non-visual words, words with a non-letter (numbers, `t20`) and words shorter than `min_length`.

    Args:
        languages: stop-word languages (codes of the `stop-words` package, e.g. "en", "fr", "it").
        drop_words: more words to drop (default `NON_VISUAL_WORDS`).
        min_length: shortest word kept.
    """

    languages: tuple[str, ...] = ("en", "fr")
    drop_words: tuple[str, ...] = tuple(NON_VISUAL_WORDS)
    min_length: int = 2

    def __post_init__(self):
        object.__setattr__(self, "languages", tuple(self.languages))
        object.__setattr__(self, "drop_words", tuple(self.drop_words))
        if self.min_length < 1:
            raise ValueError(f"min_length must be >= 1. Received: min_length={self.min_length}")
        from nltk.tokenize import RegexpTokenizer

        dropped = stop_words(self.languages) | {w for d in self.drop_words for w in normalize_text(d).split()}
        object.__setattr__(self, "_dropped", dropped)
        object.__setattr__(self, "_tokenizer", RegexpTokenizer(r"\w+"))

    def __call__(self, text: str | None) -> list[str]:
        if not text:
            return []
        return [t for t in self._tokenizer.tokenize(normalize_text(str(text)))
                if t.isalpha() and len(t) >= self.min_length and t not in self._dropped]

    def to_dict(self) -> dict:
        return {"languages": list(self.languages), "drop_words": list(self.drop_words), "min_length": self.min_length}

    @classmethod
    def from_dict(cls, data: dict) -> TextTokenizer:
        return cls(**data)


class Vocabulary:
    """The K most frequent words of a corpus (each at least `min_count` times), with their counts.

    Word ids follow frequency: id 0 is the most frequent word. Ties break alphabetically, so
    the same corpus always gives the same ids.
    """

    def __init__(self, words: Sequence[str], counts: Sequence[int], tokenizer: TextTokenizer | None = None):
        if len(words) != len(counts):
            raise ValueError(f"Got {len(words)} words but {len(counts)} counts.")
        if len(set(words)) != len(words):
            raise ValueError("A vocabulary's words must be unique.")
        self.words = list(words)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.tokenizer = tokenizer or TextTokenizer()
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], max_size: int = 30_000, min_count: int = 1,
              tokenizer: TextTokenizer | None = None, per_document: bool = True) -> Vocabulary:
        """Counts words over documents (`per_document`: each word once per document, as bags of
        words are) and keeps the `max_size` most frequent that occur `min_count` times or more."""
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1. Received: max_size={max_size}")
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1. Received: min_count={min_count}")
        counter: Counter = Counter()
        for tokens in token_lists:
            counter.update(set(tokens) if per_document else tokens)
        ranked = sorted((w for w, c in counter.items() if c >= min_count), key=lambda w: (-counter[w], w))[:max_size]
        if not ranked:
            raise ValueError(f"No word occurs {min_count}+ times: the vocabulary would be empty "
                             f"({len(counter)} distinct words read).")
        return cls(ranked, [counter[w] for w in ranked], tokenizer)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def ids(self, tokens: Iterable[str]) -> list[int]:
        """Ids of the in-vocabulary tokens, in order (unknown words are left out)."""
        return [self.index[t] for t in tokens if t in self.index]

    def bag(self, text: str | None) -> np.ndarray:
        """The sorted unique word ids of a text: its bag of words."""
        return np.unique(np.asarray(self.ids(self.tokenizer(text)), dtype=np.int64))

    def query_ids(self, text: str) -> np.ndarray:
        """The ids of a query's words; a query with none of them is an error naming it."""
        ids = self.bag(text)
        if not len(ids):
            raise ValueError(f"No word of the query {text!r} is in the vocabulary (tokens: {self.tokenizer(text)}).")
        return ids

    def bags(self, texts: Iterable[str | None]) -> list[np.ndarray]:
        return [self.bag(t) for t in texts]

    def to_dict(self) -> dict:
        return {"format": "visnet-vocabulary-1", "tokenizer": self.tokenizer.to_dict(), "words": self.words,
                "counts": self.counts.tolist()}

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, ensure_ascii=False)
            handle.write("\n")

    @classmethod
    def load(cls, path: str) -> Vocabulary:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if data.get("format") != "visnet-vocabulary-1":
            raise ValueError(f"{path} is not a visnet vocabulary (format {data.get('format')!r}).")
        return cls(data["words"], data["counts"], TextTokenizer.from_dict(data["tokenizer"]))


def load_type_lexicon(path: str | None = None) -> tuple[list[str], dict[str, int]]:
    """The word-type lexicon: type names and each word's type index.

    The default (`visnet/data/resources/fashion_types.json`) lists English and French garment,
    colour, texture and style words, normalised as `normalize_text` does. A custom file has the
    same layout: `{"format": "visnet-type-lexicon-1", "types": [...], "words": {type: [words]}}`.
    """
    import os

    path = path or os.path.join(os.path.dirname(__file__), "resources", "fashion_types.json")
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if data.get("format") != "visnet-type-lexicon-1":
        raise ValueError(f"{path} is not a visnet type lexicon (format {data.get('format')!r}).")
    types = list(data["types"])
    index: dict[str, int] = {}
    for t, words in data["words"].items():
        if t not in types:
            raise ValueError(f"{path}: words listed under unknown type {t!r} (types: {types}).")
        for word in words:
            index.setdefault(normalize_text(word).strip(), types.index(t))
    return types, index


def word_types(vocabulary: Vocabulary, lexicon: dict[str, int]) -> np.ndarray:
    """The lexicon type of each vocabulary word, -1 for words the lexicon does not list."""
    return np.array([lexicon.get(w, -1) for w in vocabulary.words], dtype=np.int32)
