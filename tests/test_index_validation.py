"""What a caller or a damaged saved file can put in an index, a catalogue or a gallery: refused, never served."""

import json
import os
import sqlite3

import numpy as np
import pytest

import visnet.index
from visnet.index import Catalogue, Gallery, IndexFileError, VectorIndex, storage

BACKENDS = {
    "brute": {"name": "brute"},
    "balltree": {"name": "balltree", "leaf_size": 2},
    "faiss-hnsw": {"name": "faiss-hnsw", "M": 8},
    "faiss-ivf": {"name": "faiss-ivf", "nlist": 2},
}
BAD_VALUES = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}
VECTORS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.6, 0.8, 0.0]], np.float32)


def items(n):
    return [{"id": f"p{i}", "label": f"type{i}", "labels": {"colour": "red"}, "text": f"product {i}"} for i in range(n)]


def saved_gallery(directory, backend="brute"):
    gallery = Gallery(BACKENDS[backend])
    gallery.add_many(items(len(VECTORS)), VECTORS)
    return gallery.save(str(directory))


def rewrite(directory, name, write):
    """Changes the data file `name` of a saved index with `write(path)` and puts its new checksum (and
    size) in the manifest, computed as `storage.write_snapshot` does: the checksum check passes."""
    manifest_path = os.path.join(directory, storage.MANIFEST)
    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    path = os.path.join(directory, manifest["data"], name)
    write(path)
    manifest["files"][name] = {"sha256": storage.sha256(path), "bytes": os.path.getsize(path)}
    with open(manifest_path, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2)
    return path


def rewrite_array(directory, name, change):
    def write(path):
        array = np.load(path, allow_pickle=False)
        array = change(array)
        with open(path, "wb") as handle:
            np.save(handle, array, allow_pickle=False)

    return rewrite(directory, name, write)


def rewrite_manifest(directory, change):
    manifest_path = os.path.join(directory, storage.MANIFEST)
    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    change(manifest)
    with open(manifest_path, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2)


def set_row(row, value):
    def change(vectors):
        vectors = vectors.copy()
        vectors[row] = value
        return vectors

    return change


def state(gallery):
    """Everything a write could change: ids in order, stored vectors, catalogue records (timestamps too)."""
    ids = gallery.ids()
    return ids, {id: gallery.index.vector(id).tolist() for id in ids}, gallery.catalogue.get_many(ids)


# -- B: vectors that are not finite ----------------------------------------------------------------


@pytest.mark.parametrize("value", BAD_VALUES)
def test_gallery_load_refuses_a_non_finite_row_whose_checksum_was_recomputed(tmp_path, value):
    saved_gallery(tmp_path)
    path = rewrite_array(tmp_path, "vectors.npy", set_row(2, BAD_VALUES[value]))
    with pytest.raises(IndexFileError, match=rf"{path}: row 2 \(id 'p2'\) has NaN or infinite values"):
        Gallery.load(str(tmp_path))


@pytest.mark.parametrize("backend", BACKENDS)
def test_index_load_refuses_a_nan_row_for_every_backend(tmp_path, backend):
    saved_gallery(tmp_path, backend)
    path = rewrite_array(tmp_path, "vectors.npy", set_row(1, [0.0, np.nan, 0.0]))
    with pytest.raises(IndexFileError, match=rf"{path}: row 1 \(id 'p1'\) has NaN or infinite values"):
        VectorIndex.load(str(tmp_path))
    with pytest.raises(IndexFileError, match=r"row 1 \(id 'p1'\) has NaN"):
        Gallery.load(str(tmp_path))


def test_load_refuses_a_nan_in_a_removed_row(tmp_path):
    index = visnet.index.get("balltree")
    index.add_batch(["a", "b", "c"], VECTORS[:3])
    index.build()
    index.remove("b")  # a tombstone: still a row of the saved file (and of the rebuilt tree)
    index.save(str(tmp_path))
    path = rewrite_array(tmp_path, "vectors.npy", set_row(1, np.nan))
    with pytest.raises(IndexFileError, match=rf"{path}: row 1 \(a removed vector\) has NaN or infinite values"):
        VectorIndex.load(str(tmp_path))


def test_load_refuses_rows_that_are_not_unit_vectors(tmp_path):
    saved_gallery(tmp_path)
    path = rewrite_array(tmp_path, "vectors.npy", set_row(3, [600.0, 800.0, 0.0]))
    with pytest.raises(IndexFileError, match=rf"{path}: row 3 \(id 'p3'\) has norm 1000, not 1"):
        Gallery.load(str(tmp_path))
    rewrite_array(tmp_path, "vectors.npy", set_row(3, 0.0))
    with pytest.raises(IndexFileError, match=r"row 3 \(id 'p3'\) has norm 0, not 1"):
        Gallery.load(str(tmp_path))


def test_load_refuses_arrays_of_the_wrong_shape_or_type(tmp_path):
    saved_gallery(tmp_path)
    rewrite_array(tmp_path, "vectors.npy", lambda v: np.concatenate([v, v[:, :1]], axis=1))
    with pytest.raises(IndexFileError, match=r"do not match the manifest: vectors \(4, 4\), 4 ids, dim=3"):
        Gallery.load(str(tmp_path))
    rewrite_array(tmp_path, "vectors.npy", lambda v: v[:, :3].astype(np.int64))
    with pytest.raises(IndexFileError, match=r"vectors.npy holds int64 values, not floating point"):
        Gallery.load(str(tmp_path))
    rewrite_array(tmp_path, "vectors.npy", lambda v: VECTORS.copy())
    rewrite_array(tmp_path, "ids.npy", lambda ids: np.arange(len(ids)))
    with pytest.raises(IndexFileError, match=r"ids.npy holds int64 values, not strings"):
        Gallery.load(str(tmp_path))
    rewrite_array(tmp_path, "ids.npy", lambda ids: np.array(["p0", "p1", "p1", "p3"]))
    with pytest.raises(IndexFileError, match=r"ids.npy holds the id 'p1' twice"):
        Gallery.load(str(tmp_path))
    rewrite_array(tmp_path, "ids.npy", lambda ids: np.array(["p0", "p1", "p2", "p3"]))
    rewrite_array(tmp_path, "order.npy", lambda order: order.astype(np.float64))
    with pytest.raises(IndexFileError, match=r"order.npy holds float64 values, not integers"):
        Gallery.load(str(tmp_path))
    rewrite_array(tmp_path, "order.npy", lambda order: order.astype(np.int64))
    assert Gallery.load(str(tmp_path)).ids() == ["p0", "p1", "p2", "p3"]  # repaired: loads again


def test_load_refuses_a_data_file_the_manifest_does_not_vouch_for(tmp_path):
    manifest = saved_gallery(tmp_path)

    def unlist(manifest):
        del manifest["files"]["vectors.npy"]

    rewrite_manifest(tmp_path, unlist)
    with pytest.raises(IndexFileError, match=r"vectors.npy is not listed in .*manifest.json"):
        Gallery.load(str(tmp_path))

    saved_gallery(tmp_path)

    def elsewhere(manifest):
        manifest["catalogue"]["file"] = "../elsewhere.sqlite"

    Catalogue().backup(str(tmp_path / "elsewhere.sqlite"))
    rewrite_manifest(tmp_path, elsewhere)
    with pytest.raises(IndexFileError, match=r"catalogue file '../elsewhere.sqlite' is not listed"):
        Gallery.load(str(tmp_path))
    assert manifest["files"]  # the first save listed every file


def test_load_refuses_a_faiss_graph_the_manifest_does_not_vouch_for(tmp_path):
    index = visnet.index.get(BACKENDS["faiss-hnsw"])
    index.add_batch(["a", "b", "c"], VECTORS[:3])
    index.build()
    index.save(str(tmp_path))
    assert VectorIndex.load(str(tmp_path)).search(VECTORS[1], k=1)[0][0] == "b"

    def unlist(manifest):
        del manifest["files"]["faiss.index"]

    rewrite_manifest(tmp_path, unlist)
    with pytest.raises(IndexFileError, match=r"faiss.index is not listed in .*manifest.json"):
        VectorIndex.load(str(tmp_path))


def test_load_refuses_a_structure_state_beyond_the_saved_rows(tmp_path):
    index = visnet.index.get(BACKENDS["balltree"])
    index.add_batch(["a", "b", "c"], VECTORS[:3])
    index.build()
    index.save(str(tmp_path))

    def beyond(manifest):
        manifest["state"]["built"] = 50

    rewrite_manifest(tmp_path, beyond)
    with pytest.raises(IndexFileError, match=r"built=50, stale=0; expected integers with 0 <= stale <= built <= 3"):
        VectorIndex.load(str(tmp_path))


def test_load_refuses_bad_manifest_numbers(tmp_path):
    saved_gallery(tmp_path)

    def bad_count(manifest):
        manifest["count"] = "4"

    rewrite_manifest(tmp_path, bad_count)
    with pytest.raises(IndexFileError, match=r"manifest.json has count='4'; expected an integer >= 0"):
        Gallery.load(str(tmp_path))

    saved_gallery(tmp_path)

    def bad_config(manifest):
        manifest["config"] = {"dim": 3, "colour": "red"}

    rewrite_manifest(tmp_path, bad_config)
    with pytest.raises(IndexFileError, match=r"manifest.json has a config the 'brute' index does not take"):
        Gallery.load(str(tmp_path))


@pytest.mark.parametrize("value", BAD_VALUES)
def test_gallery_writes_refuse_non_finite_vectors_and_change_nothing(value):
    bad = BAD_VALUES[value]
    gallery = Gallery("brute")
    gallery.add_many(items(3), VECTORS[:3])
    before = state(gallery)
    with pytest.raises(ValueError, match=r"The vector of id 'new' has NaN or infinite values"):
        gallery.add({"id": "new", "label": "x"}, [1.0, bad, 0.0])
    with pytest.raises(ValueError, match=r"The vector of id 'n2' has NaN or infinite values"):
        gallery.add_many([{"id": "n1"}, {"id": "n2"}], [[1.0, 0.0, 0.0], [bad, 0.0, 0.0]])
    with pytest.raises(ValueError, match=r"The vector of id 'p1' has NaN or infinite values"):
        gallery.update("p1", [bad, bad, bad], label="changed")
    with pytest.raises(ValueError, match=r"vector must have dim=3 values. Received: dim=2"):
        gallery.update("p1", [1.0, 0.0], label="changed")
    with pytest.raises(ValueError, match=r"vector must have dim=3 values. Received: dim=4"):
        gallery.add({"id": "new"}, [1.0, 0.0, 0.0, 0.0])
    assert state(gallery) == before
    assert "new" not in gallery.catalogue and "n1" not in gallery.catalogue


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", BAD_VALUES)
def test_every_backend_refuses_non_finite_vectors_on_each_write(backend, value):
    bad = BAD_VALUES[value]
    index = visnet.index.get(BACKENDS[backend])
    index.add_batch(["a", "b"], VECTORS[:2])
    message = r"The vector of id '{}' has NaN or infinite values"
    with pytest.raises(ValueError, match=message.format("c")):
        index.add("c", [bad, 1.0, 0.0])
    with pytest.raises(ValueError, match=message.format("d")):
        index.add_batch(["c", "d"], [[0.0, 0.0, 1.0], [0.0, bad, 1.0]])
    with pytest.raises(ValueError, match=message.format("a")):
        index.update("a", [bad, 0.0, 0.0])
    with pytest.raises(ValueError, match=message.format("b")):
        index.update_batch(["a", "b"], [[0.0, 0.0, 1.0], [0.0, 0.0, bad]])
    assert index.ids() == ["a", "b"]
    np.testing.assert_array_equal(index.vector("a"), VECTORS[0])
    np.testing.assert_array_equal(index.vector("b"), VECTORS[1])
    assert [id for id, _ in index.search([1.0, 0.1, 0.0], k=5)] == ["a", "b"]


# -- C: catalogue fields and a damaged catalogue file ------------------------------------------------


def test_gallery_update_refused_by_the_catalogue_leaves_the_vector_unchanged():
    gallery = Gallery("brute")
    gallery.add_many(items(2), VECTORS[:2])
    before = state(gallery)
    with pytest.raises(ValueError, match=r"text must be valid Unicode text"):
        gallery.update("p0", VECTORS[2], text="broken \udc80 bytes")
    assert state(gallery) == before


def test_catalogue_refuses_labels_that_are_not_plain_json():
    catalogue = Catalogue()
    with pytest.raises(ValueError, match=r"labels must hold JSON values .*Out of range float"):
        catalogue.add({"id": "p1", "labels": {"price": float("nan")}})
    with pytest.raises(ValueError, match=r"labels must hold JSON values .*Out of range float"):
        catalogue.add({"id": "p1", "labels": {"sizes": [1.0, float("inf")]}})
    deep = {}
    inner = deep
    for _ in range(100_000):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(ValueError, match=r"labels nest too deeply"):
        catalogue.add({"id": "p1", "labels": deep})
    with pytest.raises(ValueError, match=r"labels must be valid Unicode text"):
        catalogue.add({"id": "p1", "labels": {"colour": "\ud800"}})
    with pytest.raises(ValueError, match=r"image must be valid Unicode text"):
        catalogue.add({"id": "p1", "image": "\udcff.jpg"})
    assert len(catalogue) == 0


def test_catalogue_lookups_by_a_non_string_id_find_nothing():
    catalogue = Catalogue()
    catalogue.add_many([{"id": "3", "label": "bag"}, {"id": "4"}])
    assert catalogue.get(3) is None and 3 not in catalogue
    assert catalogue.get_many([3, "4", None]).keys() == {"4"}
    with pytest.raises(KeyError, match=r"Unknown id: 3 is not in the catalogue"):
        catalogue.remove(3)
    with pytest.raises(KeyError, match=r"Unknown id: 3 is not in the catalogue"):
        catalogue.update(3, label="x")
    assert catalogue.ids() == ["3", "4"]
    gallery = Gallery("brute", catalogue=Catalogue())
    gallery.add({"id": "3", "label": "bag"}, VECTORS[0])
    assert gallery.get(3) is None and gallery.get("3")["label"] == "bag"


@pytest.mark.parametrize("damage, problem", [
    ("UPDATE items SET labels = '[1, 2]' WHERE id = 'p1'", r"item 'p1': labels are not a JSON object"),
    ("UPDATE items SET labels = '{\"price\": NaN}' WHERE id = 'p1'", r"item 'p1': labels are not valid JSON"),
    ("UPDATE items SET labels = '{not json' WHERE id = 'p1'", r"item 'p1': labels are not valid JSON"),
    ("UPDATE items SET label = x'41' WHERE id = 'p1'", r"item 'p1': label is blob, not text"),
    ("UPDATE items SET updated = x'00ff' WHERE id = 'p1'", r"item 'p1': updated is blob, not text"),
    ("UPDATE items SET id = '' WHERE id = 'p1'", r"an item has the id ''"),
    ("ALTER TABLE items DROP COLUMN text", r"the items table has columns .*; expected id, image"),
    ("PRAGMA user_version = 9", r"catalogue schema version 9; this visnet reads up to 1"),
])
def test_gallery_load_refuses_a_damaged_catalogue_whose_checksum_was_recomputed(tmp_path, damage, problem):
    saved_gallery(tmp_path)

    def write(path):
        connection = sqlite3.connect(path)
        with connection:
            connection.execute(damage)
        connection.close()

    path = rewrite(tmp_path, "catalogue.sqlite", write)
    with pytest.raises(IndexFileError, match=rf"{path}: {problem}"):
        Gallery.load(str(tmp_path))


def test_gallery_load_refuses_a_catalogue_that_is_not_a_database(tmp_path):
    saved_gallery(tmp_path)
    path = rewrite(tmp_path, "catalogue.sqlite", lambda path: open(path, "wb").write(b"not a database" * 100))
    with pytest.raises(IndexFileError, match=rf"{path}: .*not a database"):
        Gallery.load(str(tmp_path))
