import json

import pytest

from visnet.data.protocol import EpisodeSettings, Protocol, make_protocol
from visnet.data.records import Dataset, Record


def dataset(classes=12, per_class=25):
    return Dataset([Record(f"{c}-{i}.jpg", f"class{c}") for c in range(classes) for i in range(per_class)])


def test_made_protocol_invariants():
    data = dataset()
    protocol = make_protocol(data, seed=1, pool_max=20, episodes=EpisodeSettings(ways=(5, 20), shots=(1, 5)))
    assert set(protocol.train_ids).isdisjoint(protocol.test_ids)
    assert len(protocol.train_ids) + len(protocol.test_ids) == len(data)
    assert len(protocol.test_ids) == 12 * 5  # 20% of each class
    assert set(protocol.base_classes).isdisjoint(protocol.novel_classes)
    assert len(protocol.novel_classes) == 5 and protocol.episodes.ways == (5,)  # 20-way dropped
    pool = {i for ids in protocol.novel_pool.values() for i in ids}
    assert pool == set(protocol.support_ids) | set(protocol.query_ids)
    assert set(protocol.support_ids).isdisjoint(protocol.query_ids)
    assert all(len(ids) == 20 for ids in protocol.novel_pool.values())
    assert make_protocol(data, seed=1) == make_protocol(data, seed=1)


def test_save_load_round_trip(tmp_path):
    protocol = make_protocol(dataset(), name="toy", label="type", image_size_hw=(64, 48))
    protocol.save(str(tmp_path / "p.json"))
    assert Protocol.load(str(tmp_path / "p.json")) == protocol


def test_bad_protocols_are_clear_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        Protocol.load(str(tmp_path / "bad.json"))
    (tmp_path / "partial.json").write_text(json.dumps({"label": "x", "classification": {}}))
    with pytest.raises(ValueError, match="missing or bad field 'open_set'"):
        Protocol.load(str(tmp_path / "partial.json"))
    with pytest.raises(ValueError, match="too few for 5-way episodes"):
        make_protocol(dataset(classes=4))
    protocol = make_protocol(dataset())
    with pytest.raises(KeyError, match="not in"):
        protocol.closed_set(dataset()[:10])
    train, test = protocol.closed_set(dataset()[:30], missing="skip")
    assert len(train) + len(test) == 30 and train.report.total + test.report.total == 300 - 30


def test_a_retrieval_split_defines_the_open_set():
    records = [Record(f"t{c}-{i}.jpg", f"item{c}", split="train") for c in range(6) for i in range(12)]
    records += [Record(f"q{c}.jpg", f"new{c}", split="query") for c in range(3)]
    records += [Record(f"g{c}-{i}.jpg", f"new{c}", split="gallery") for c in range(3) for i in range(2)]
    protocol = make_protocol(Dataset(records), episodes=EpisodeSettings(ways=(2, 5), shots=(1,), queries_per_class=2))
    assert set(protocol.query_ids) == {"q0.jpg", "q1.jpg", "q2.jpg"}
    assert len(protocol.support_ids) == 6 and protocol.novel_classes == ("new0", "new1", "new2")
    assert set(protocol.base_classes) == {f"item{c}" for c in range(6)}
    assert protocol.episodes.ways == (2,)  # 3 items have 1 + 2 images; 5-way is impossible
    assert set(protocol.train_ids) | set(protocol.test_ids) == {r.id for r in records if r.split == "train"}


def test_inconsistent_protocols_are_refused():
    data = make_protocol(dataset()).to_dict()
    data["open_set"]["base_classes"].append(data["open_set"]["novel_classes"][0])
    with pytest.raises(ValueError, match="classes both base and novel"):
        Protocol.from_dict(data)
    data = make_protocol(dataset()).to_dict()
    data["open_set"]["episodes"] = [5, 1]
    with pytest.raises(ValueError, match="missing or bad field"):
        Protocol.from_dict(data)
