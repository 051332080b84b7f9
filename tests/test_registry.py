import pytest

from visnet.registry import Registry


class Thing:
    def __init__(self, size=1):
        self.size = size


def make():
    registry = Registry("thing")
    registry.register("thing")(Thing)
    registry.register("fn")(len)
    return registry


def test_get_by_name_dict_and_instance():
    registry = make()
    assert registry.get("thing").size == 1
    assert registry.get("THING", size=3).size == 3
    assert registry.get({"name": "thing", "size": 5}).size == 5
    instance = Thing(7)
    assert registry.get(instance) is instance
    assert registry.lookup("fn") is len
    assert registry.names() == ["fn", "thing"]


def test_errors_name_the_bad_value():
    registry = make()
    with pytest.raises(ValueError, match=r"Unknown thing: 'nope'. Available: fn, thing"):
        registry.get("nope")
    with pytest.raises(ValueError, match="needs a 'name' key"):
        registry.get({"size": 2})
    with pytest.raises(ValueError, match="takes no options"):
        registry.get("fn", size=2)
    with pytest.raises(ValueError, match="The thing 'thing' does not take colour. It takes: size."):
        registry.get("thing", colour=1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("thing")(dict)
