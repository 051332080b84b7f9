"""ImageNet's class names as words: which of an ImageNet classifier's 1,000 classes a word names.

An ImageNet-pretrained trunk comes with a classifier that already knows `jean`, `sandal`,
`Windsor tie` and `perfume`, kinds of product a catalogue's names may never have taught a model.
Matching a query's words to those class names lets text search use that knowledge (see
`visnet.word_probe`):

    names = ImageNetNames.load()
    names.classes("jeans")        # (608,): "jean, blue jean, denim"
    names.describe("watches")     # ["digital watch", "stopwatch"] ("stop watch" is a synonym)
    names.describe("bag")         # ["plastic bag", "punching bag", "sleeping bag"]; with compounds also "mailbag"

A word names a class when, as a singular or plural noun, it is the head word (the last word) of
one of the class's synonyms: `tie` names `Windsor tie` and `bow tie`, not `tie rack`. With
`compounds`, it may also end a one-word synonym (`bag` names `mailbag`, `shirt` names
`sweatshirt`), as English closed compounds put their head last.

`resources/imagenet_classes.tsv` lists the ILSVRC-2012 classes in the order of the classifiers'
outputs (sorted WordNet ids, as Keras and torchvision order them), each with its WordNet synonyms
(the WordNet lemma names of the synsets, as the `timm` package, Apache-2.0, lists them in
`timm/data/_info/imagenet_synset_to_lemma.txt`). The order is checked against the EfficientNet-Lite0
checkpoint on catalogue photos: all 60 of fashion-products' jeans photos go to class 608, "jean".
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable

from visnet.data.text import normalize_text

CLASSES_FILE = os.path.join(os.path.dirname(__file__), "resources", "imagenet_classes.tsv")
#: The shortest word matched inside a one-word compound (`cap` in `kneecap`, not `ty`).
MIN_COMPOUND_PART = 3


def word_forms(word: str) -> set[str]:
    """The word and the singulars it may be the plural of (`watches` -> watch, `ties` -> tie or ty).

    >>> sorted(word_forms("ties"))
    ['tie', 'ties', 'ty']
    """
    forms = {word}
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        forms.add(word[:-1])
        if word.endswith("ies"):
            forms.add(word[:-3] + "y")
        if word.endswith(("ses", "xes", "zes", "ches", "shes")):
            forms.add(word[:-2])
    return forms


@functools.lru_cache(maxsize=4)
def _read(path: str) -> tuple[tuple[str, str], ...]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2 or not parts[1].strip():
                raise ValueError(f"{path}:{number}: expected `wordnet id<TAB>names`, got {line.rstrip()!r}")
            rows.append((parts[0], parts[1]))
    return tuple(rows)


class ImageNetNames:
    """The classes of an ImageNet classifier and the words that name them.

    Args:
        names: one string of comma-separated synonyms per class, in the classifier's output order.
        compounds: bool. A word also names the one-word synonyms it ends (`bag` -> `mailbag`).
    """

    def __init__(self, names: Iterable[str], compounds: bool = False):
        self.names = [str(n) for n in names]
        if not self.names:
            raise ValueError("ImageNetNames needs at least one class name.")
        self.compounds = bool(compounds)
        self._heads: dict[str, set[int]] = {}
        self._one_word: list[tuple[str, int]] = []
        self._cache: dict[str, tuple[int, ...]] = {}
        for index, synonyms in enumerate(self.names):
            for synonym in synonyms.split(","):
                words = normalize_text(synonym).split()
                if not words:
                    continue
                for form in word_forms(words[-1]):
                    self._heads.setdefault(form, set()).add(index)
                if len(words) == 1:
                    self._one_word.append((words[0], index))

    @classmethod
    def load(cls, path: str | None = None, compounds: bool = False) -> ImageNetNames:
        """The 1,000 ILSVRC-2012 classes shipped with the package (or a file of the same form)."""
        return cls([names for _, names in _read(path or CLASSES_FILE)], compounds)

    def __len__(self) -> int:
        return len(self.names)

    def classes(self, word: str) -> tuple[int, ...]:
        """The classes `word` (one token, as the text tokenizer gives it) names, in output order."""
        if word not in self._cache:
            self._cache[word] = self._match(word)
        return self._cache[word]

    def _match(self, word: str) -> tuple[int, ...]:
        word = normalize_text(word).strip()
        if not word or " " in word:
            return ()
        found: set[int] = set()
        forms = word_forms(word)
        for form in forms:
            found |= self._heads.get(form, set())
        if self.compounds:
            for synonym, index in self._one_word:
                if any(len(f) >= MIN_COMPOUND_PART and len(synonym) > len(f) and synonym.endswith(f)
                       for f in forms):
                    found.add(index)
        return tuple(sorted(found))

    def describe(self, word: str) -> list[str]:
        """The first synonym of each class `word` names (for messages)."""
        return [self.names[i].split(",")[0].strip() for i in self.classes(word)]

    def query_classes(self, tokens: Iterable[str]) -> dict[str, tuple[int, ...]]:
        """Each distinct token of a query that names classes, with them (tokens in first-seen order)."""
        out: dict[str, tuple[int, ...]] = {}
        for token in tokens:
            if token not in out:
                found = self.classes(token)
                if found:
                    out[token] = found
        return out

