import pytest

from visnet.data.imagenet import ImageNetNames, word_forms


def test_word_forms_are_the_word_and_the_singulars_it_may_be_the_plural_of():
    assert word_forms("watches") == {"watches", "watche", "watch"}
    assert word_forms("jeans") == {"jeans", "jean"}
    assert word_forms("ties") == {"ties", "tie", "ty"}
    assert word_forms("dress") == {"dress"}  # not a plural
    assert word_forms("bus") == {"bus"}  # too short to be one


def test_a_word_names_the_classes_whose_synonyms_it_heads():
    names = ImageNetNames(["Windsor tie", "tie rack", "mailbag, postbag", "jean, blue jean, denim",
                           "jersey, T-shirt, tee shirt", "digital watch", "Scottie"], compounds=False)
    assert names.classes("ties") == (0,)  # the head of `Windsor tie`, not of `tie rack`
    assert names.classes("Jeans") == (3,)
    assert names.classes("tshirt") == (4,) and names.classes("shirts") == (4,)  # `T-shirt` reads as the tokenizer's `tshirt`
    assert names.classes("watches") == (5,)
    assert names.classes("bag") == ()  # `mailbag` is a compound
    assert names.classes("") == () and names.classes("two words") == () and names.classes("handbag") == ()
    assert names.describe("jeans") == ["jean"]
    assert names.query_classes(["blue", "jeans", "ties", "jeans"]) == {"jeans": (3,), "ties": (0,)}


def test_with_compounds_a_word_also_names_the_one_word_synonyms_it_ends():
    names = ImageNetNames(["mailbag, postbag", "sweatshirt", "Scottie", "ty"], compounds=True)
    assert names.classes("bag") == (0,) and names.classes("bags") == (0,)
    assert names.classes("shirt") == (1,)
    assert names.classes("tie") == (2,)  # compounds are matched by spelling: the price of the rule
    assert names.classes("ag") == ()  # shorter than MIN_COMPOUND_PART


def test_the_shipped_classes_are_imagenet_in_the_classifiers_order(tmp_path):
    names = ImageNetNames.load()
    assert len(names) == 1000
    assert names.names[0].startswith("tench") and names.names[999].startswith("toilet tissue")
    assert names.describe("jeans") == ["jean"] and names.classes("jeans") == (608,)
    assert "sandal" in names.describe("sandals") and "Windsor tie" in names.describe("ties")
    bad = tmp_path / "bad.tsv"
    bad.write_text("n01440764\ttench\nn01443537\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2: expected"):
        ImageNetNames.load(str(bad))
    with pytest.raises(ValueError, match="at least one class"):
        ImageNetNames([])
