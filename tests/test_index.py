"""Retrieval indexes against a brute-force NumPy reference, their files, the catalogue and the gallery."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from helpers import clustered_embeddings

import visnet.index
from visnet.index import (
    BallTreeIndex,
    BruteForceIndex,
    Catalogue,
    FaissIndex,
    Gallery,
    IndexFileError,
    ModelMismatchError,
    VectorIndex,
    storage,
)
from visnet.index.ranking import top_k

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = {
    "brute": {"name": "brute"},
    "balltree": {"name": "balltree", "leaf_size": 8},
    "faiss-hnsw": {"name": "faiss-hnsw", "M": 16, "ef_construction": 64, "ef_search": 64},
    "faiss-ivf": {"name": "faiss-ivf", "nlist": 10, "nprobe": 5},
    # A real engine: Milvus Lite, in a file of the test's own (`milvus_file` below).
    "milvus-flat": {"name": "milvus", "index_type": "FLAT"},
    "milvus-hnsw": {"name": "milvus", "index_type": "HNSW", "M": 16, "ef_construction": 64, "ef_search": 64},
}
EXACT = ("brute", "balltree", "milvus-flat")
#: Backends that rebuild a structure from buffered changes (`pending`, `builds`, `rebuild_fraction`).
BUFFERED = ("balltree", "faiss-hnsw", "faiss-ivf")


@pytest.fixture(autouse=True)
def milvus_file(tmp_path, monkeypatch):
    """Each test's Milvus indexes live in its own Milvus Lite file (the default URI of `MilvusIndex`)."""
    monkeypatch.setenv("VISNET_MILVUS_URI", str(tmp_path / "milvus.db"))


def unit(x):
    """Normalised as the index does: float32 in, float64 norm, float32 out."""
    x = np.asarray(x, np.float32)
    return (x / np.linalg.norm(x.astype(np.float64), axis=-1, keepdims=True)).astype(np.float32)


def reference(contents, queries, k):
    """Exhaustive search over an insertion-ordered {id: vector}: (ids, scores) lists per query."""
    ids = list(contents)
    scores = unit(queries).astype(np.float64) @ unit(np.stack([contents[i] for i in ids])).astype(np.float64).T
    out_ids, out_scores = [], []
    for row in scores:
        best = np.lexsort((np.arange(len(ids)), -row))[:k]
        out_ids.append([ids[i] for i in best])
        out_scores.append(row[best])
    return out_ids, np.array(out_scores)


def mixture(n, dim=16, seed=0, classes=10):
    """Clustered vectors: `classes` Gaussian clusters that overlap a little."""
    vectors, _ = clustered_embeddings(classes, -(-n // classes), dim=dim, spread=4.0, seed=seed)
    return np.random.default_rng(seed).permutation(vectors)[:n].astype(np.float32)


def check_against_reference(index, contents, queries, exact, k=10):
    ids, scores = index.search_batch(queries, k)
    ref_ids, ref_scores = reference(contents, queries, k)
    assert len(index) == len(contents) and set(index.ids()) == set(contents)
    assert ids.shape == scores.shape == (len(queries), min(k, len(contents)))
    if exact:
        assert ids.tolist() == ref_ids
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-6, atol=1e-6)
        return 1.0
    # Approximate: only live ids, each once, with its exact cosine, best first.
    for row_ids, row_scores in zip(ids.tolist(), scores):
        assert len(set(row_ids)) == len(row_ids) and set(row_ids) <= set(contents)
        assert np.all(np.diff(row_scores) <= 0)
    cosines = [[float(unit(contents[i]) @ unit(q)) for i in row] for row, q in zip(ids.tolist(), queries)]
    np.testing.assert_allclose(scores, cosines, rtol=1e-5, atol=1e-5)
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids.tolist(), ref_ids)])


@pytest.mark.parametrize("backend", BACKENDS)
def test_search_matches_exhaustive_reference(backend):
    vectors, queries = mixture(400), mixture(30, seed=1)
    contents = {f"p{i}": v for i, v in enumerate(vectors)}
    index = visnet.index.get(BACKENDS[backend])
    index.add_batch(list(contents), vectors)
    recall = check_against_reference(index, contents, queries, backend in EXACT)
    assert recall >= 0.95
    single = index.search(queries[0], k=10)
    ids, scores = index.search_batch(queries[:1], k=10)
    assert single == list(zip(ids[0].tolist(), scores[0].tolist()))
    assert isinstance(single[0][0], str) and isinstance(single[0][1], float)
    assert scores.dtype == np.float32


def change_at_random(index, contents, pool, rng, fresh, operations=("add", "update", "remove", "readd"),
                     p=(0.35, 0.3, 0.3, 0.05)) -> int:
    """One random add, update, remove or re-add, made to `index` and to the reference `contents`
    (id -> vector); new ids take pool row `fresh`. Returns the next fresh row."""
    operation = rng.choice(list(operations), p=list(p) if p is not None else None)
    if operation == "add":
        contents[f"p{fresh}"] = pool[fresh]
        index.add(f"p{fresh}", pool[fresh])
        return fresh + 1
    id = str(rng.choice(sorted(contents)))
    if operation == "update":
        contents[id] = pool[rng.integers(len(pool))] + rng.normal(size=16).astype(np.float32)
        index.update(id, contents[id])
    else:
        del contents[id]
        index.remove(id)
        if operation == "readd":  # back at the end of the insertion order
            contents[id] = pool[rng.integers(len(pool))]
            index.add(id, contents[id])
    return fresh


@pytest.mark.parametrize("backend", BACKENDS)
def test_interleaved_adds_updates_removes_match_a_fresh_exact_search(backend):
    rng = np.random.default_rng(7)
    pool, queries = mixture(900, seed=2), mixture(20, seed=3)
    index = visnet.index.get(BACKENDS[backend])
    contents = {f"p{i}": pool[i] for i in range(300)}
    index.add_batch(list(contents), pool[:300])
    fresh, recalls, pending = 300, [], []
    for step in range(360):
        fresh = change_at_random(index, contents, pool, rng, fresh)
        if step % 15 == 0:
            recalls.append(check_against_reference(index, contents, queries, backend in EXACT))
            pending.append(getattr(index, "pending", 0))
    recalls.append(check_against_reference(index, contents, queries, backend in EXACT))
    assert np.mean(recalls) >= 0.9
    if backend in BUFFERED:
        assert any(pending) and index.builds > 1  # searched with a buffer and tombstones, and rebuilt


def test_balltree_rebuilds_lazily_once_changes_pass_the_fraction():
    vectors, queries = mixture(200), mixture(10, seed=1)
    contents = {f"p{i}": v for i, v in enumerate(vectors[:100])}
    index = BallTreeIndex(leaf_size=4, rebuild_fraction=0.2)
    index.add_batch(list(contents), vectors[:100])
    index.search(queries[0], 3)
    assert (index.builds, index.pending) == (1, 0)
    for i in range(100, 106):  # 6 buffered rows + 4 tombstones: 10 <= 0.2 * 102
        contents[f"p{i}"] = vectors[i]
        index.add(f"p{i}", vectors[i])
    for i in range(4):
        del contents[f"p{i}"]
        index.remove(f"p{i}")
    check_against_reference(index, contents, queries, exact=True)
    assert (index.builds, index.pending) == (1, 10)
    for i in range(106, 120):
        contents[f"p{i}"] = vectors[i]
        index.add(f"p{i}", vectors[i])
    assert index.builds == 1  # nothing happens before the next search
    check_against_reference(index, contents, queries, exact=True)
    assert (index.builds, index.pending) == (2, 0)
    index.add("late", vectors[150])
    index.build()
    assert (index.builds, index.pending) == (3, 0)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_faiss_grows_in_place_with_additions_and_rebuilds_for_removals(kind):
    vectors, queries = mixture(640), mixture(10, seed=1)
    contents = {f"p{i}": v for i, v in enumerate(vectors[:300])}
    index = FaissIndex(kind=kind, M=16, nlist=4, nprobe=4)
    index.add_batch(list(contents), vectors[:300])
    index.build()
    for i in range(300, 340):  # 40 > 0.1 * 340 pending additions
        contents[f"p{i}"] = vectors[i]
        index.add(f"p{i}", vectors[i])
    index.remove("p300")
    del contents["p300"]
    assert check_against_reference(index, contents, queries, exact=False) >= 0.95
    assert (index.builds, index.extensions, index.pending) == (1, 1, 1)  # p300 is a tombstone now
    for id in [f"p{i}" for i in range(40)]:
        index.remove(id)
        del contents[id]
    assert check_against_reference(index, contents, queries, exact=False) >= 0.95
    assert (index.builds, index.extensions, index.pending) == (2, 1, 0)
    if kind == "ivf":  # an IVF is trained again once it has doubled (299 trained, 599 now)
        index.add_batch([f"p{i}" for i in range(340, 640)], vectors[340:])
        index.search(queries[0], 1)
        assert (index.builds, index.extensions) == (3, 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mostly_tombstones_still_give_k_live_results(backend):
    vectors, queries = mixture(300), mixture(10, seed=1)
    index = visnet.index.get({**BACKENDS[backend], "rebuild_fraction": 100.0} if backend in BUFFERED
                             else BACKENDS[backend])
    contents = {f"p{i}": v for i, v in enumerate(vectors)}
    index.add_batch(list(contents), vectors)
    index.build()
    for id in list(contents)[:285]:  # 95% tombstones, no rebuild
        del contents[id]
        index.remove(id)
    recall = check_against_reference(index, contents, queries, backend in EXACT)
    assert recall >= 0.9
    assert getattr(index, "builds", 1) == 1
    for id in list(contents):
        index.remove(id)
    assert index.search(queries[0], 5) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_equal_scores_come_in_insertion_order(backend):
    rng = np.random.default_rng(0)
    index = visnet.index.get(BACKENDS[backend])
    same = np.array([1.0, 2.0, 0.0, 0.0], np.float32)
    others = rng.normal(size=(30, 4)).astype(np.float32)
    others[:, 0] = -np.abs(others[:, 0]) - 3  # far from `same`
    index.add_batch([f"o{i}" for i in range(15)], others[:15])
    index.add_batch(["c", "a"], [same, 2 * same])
    index.add_batch([f"o{i}" for i in range(15, 30)], others[15:])
    index.add("b", 0.5 * same)
    index.update("c", 4 * same)  # keeps its place (x4: the same normalised vector, bit for bit)
    hits = index.search(same, k=3)
    assert [id for id, _ in hits] == ["c", "a", "b"]
    assert len({score for _, score in hits}) == 1 and hits[0][1] == pytest.approx(1.0)
    if backend in EXACT:
        assert [id for id, _ in index.search(same, k=2)] == ["c", "a"]


def test_top_k_breaks_ties_at_the_cut_by_order():
    scores = np.array([[0.5, 0.9, 0.5, 0.5, -np.inf], [0.1, 0.2, 0.3, 0.4, 0.5]])
    assert top_k(scores, np.array([4, 3, 0, 1, 2]), 3).tolist() == [[1, 2, 3], [4, 3, 2]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_is_refused_and_leaves_the_index_unchanged(backend):
    index = visnet.index.get(BACKENDS[backend])
    index.add_batch(["a", "b", "c"], np.eye(3, 4) + 0.1)
    good = np.ones(4)
    with pytest.raises(ValueError, match=r"vector must have dim=4 values. Received: dim=3"):
        index.add("d", [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"vectors must have dim=4 values. Received: dim=5"):
        index.search_batch(np.ones((2, 5)), k=1)
    with pytest.raises(ValueError, match=r"vectors must have shape \(2, dim\) \(one row per id\). Received: shape=\(3, 4\)"):
        index.add_batch(["d", "e"], np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"The vector of id 'd' has NaN or infinite values"):
        index.add("d", [np.nan, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"The vector of id 'e' has NaN or infinite values"):
        index.add_batch(["d", "e"], [good, [np.inf, 1.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match=r"The vector of id 'd' has zero norm"):
        index.add("d", np.zeros(4))
    with pytest.raises(ValueError, match=r"Id 'a' is already in the index; use update\(\)"):
        index.add_batch(["d", "a"], [good, good])
    with pytest.raises(ValueError, match=r"Duplicate id in one call: 'x'"):
        index.add_batch(["x", "x"], [good, good])
    with pytest.raises(ValueError, match=r"Ids must be non-empty strings. Received: id=3"):
        index.add(3, good)
    with pytest.raises(ValueError, match=r"Ids must be non-empty strings. Received: id=''"):
        index.add("", good)
    with pytest.raises(KeyError, match=r"Unknown id: 'zz' is not in the index"):
        index.update("zz", good)
    with pytest.raises(KeyError, match=r"Unknown id: 'zz' is not in the index"):
        index.remove_batch(["a", "zz"])
    with pytest.raises(ValueError, match=r"k must be an integer >= 1. Received: k=0"):
        index.search(good, k=0)
    with pytest.raises(ValueError, match=r"Query row 1 has NaN or infinite values"):
        index.search_batch([good, [1.0, np.nan, 0.0, 0.0]], k=1)
    with pytest.raises(ValueError, match=r"Query row 0 has zero norm"):
        index.search(np.zeros(4), k=1)
    assert index.ids() == ["a", "b", "c"] and index.dim == 4
    assert len(index.search(good, k=50)) == 3  # k > len: everything
    np.testing.assert_allclose(index.vector("a"), unit(np.eye(3, 4)[0] + 0.1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_empty_index_returns_no_results(backend):
    index = visnet.index.get(BACKENDS[backend])
    assert index.dim is None and len(index) == 0 and "a" not in index
    assert index.search([1.0, 0.0, 0.0], k=5) == []
    ids, scores = index.search_batch(np.ones((2, 3)), k=5)
    assert ids.shape == scores.shape == (2, 0)
    index.add("a", [1.0, 0.0])
    index.remove("a")
    assert index.search([1.0, 0.0], k=5) == [] and index.dim == 2


def test_registry_resolves_names_dicts_and_instances():
    assert isinstance(visnet.index.get("brute"), BruteForceIndex)
    assert visnet.index.get({"name": "balltree", "leaf_size": 5}).leaf_size == 5
    hnsw = visnet.index.get("faiss-hnsw", M=8)
    assert isinstance(hnsw, FaissIndex) and (hnsw.kind, hnsw.M) == ("hnsw", 8)
    assert visnet.index.get({"name": "faiss-ivf", "nprobe": 3}).get_config()["kind"] == "ivf"
    instance = BallTreeIndex(dim=3)
    assert visnet.index.get(instance) is instance
    config = visnet.index.get("faiss", kind="ivf", nlist=4, dim=8).get_config()
    assert FaissIndex.from_config(config).get_config() == config
    assert visnet.index.indexes.names() == ["balltree", "brute", "faiss", "milvus"]
    with pytest.raises(ValueError, match=r"Unknown index: 'annoy'. Available: balltree, brute, faiss, milvus"):
        visnet.index.get("annoy")
    lite = visnet.index.get("milvus:" + os.path.join(os.environ["VISNET_MILVUS_URI"] + "-x", "m.db"), index_type="flat")
    assert lite.uri.endswith(os.path.join("-x", "m.db")) and lite.index_type == "FLAT" and lite.exact
    with pytest.raises(ValueError, match=r"DISKANN needs a Milvus server \(uri=http://host:19530\)"):
        visnet.index.get("milvus", index_type="DISKANN")
    with pytest.raises(ValueError, match=r"consistency must be one of Session, Strong"):
        visnet.index.get("milvus", consistency="Sometimes")
    with pytest.raises(ValueError, match=r"The index 'brute' does not take leaf_size"):
        visnet.index.get("brute", leaf_size=3)
    with pytest.raises(ValueError, match=r"leaf_size must be an integer >= 1. Received: leaf_size=0"):
        visnet.index.get("balltree", leaf_size=0)
    with pytest.raises(ValueError, match=r"kind must be one of hnsw, ivf. Received: kind='lsh'"):
        visnet.index.get("faiss-lsh")
    with pytest.raises(ValueError, match=r"rebuild_fraction must be > 0. Received: rebuild_fraction=0"):
        BallTreeIndex(rebuild_fraction=0)
    with pytest.raises(ValueError, match=r"dim must be an integer >= 1. Received: dim=-2"):
        BruteForceIndex(dim=-2)


def test_ivf_with_too_few_vectors_to_train_searches_exactly():
    vectors, queries = mixture(60), mixture(5, seed=1)
    contents = {f"p{i}": v for i, v in enumerate(vectors)}
    index = FaissIndex(kind="ivf", nlist=16, nprobe=1)
    index.add_batch(list(contents), vectors)
    check_against_reference(index, contents, queries, exact=True)
    assert index.structure == "flat"
    more = mixture(400, seed=4)
    index.add_batch([f"q{i}" for i in range(400)], more)
    index.build()
    assert index.structure == "ivf11"  # 460 vectors: at most 460 // 39 cells


def test_faiss_is_optional():
    script = textwrap.dedent("""
        import sys
        sys.modules["faiss"] = None  # as if it were not installed
        import visnet.index
        print(visnet.index.get("balltree").name)
        try:
            visnet.index.get("faiss-hnsw")
        except ImportError as error:
            print(error)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "balltree"
    assert "pip install visnet[faiss]" in done.stdout


def test_brute_force_chunks_big_query_batches(monkeypatch):
    vectors, queries = mixture(200), mixture(40, seed=1)
    contents = {f"p{i}": v for i, v in enumerate(vectors)}
    index = BruteForceIndex()
    index.add_batch(list(contents), vectors)
    monkeypatch.setattr("visnet.index.base._CHUNK_SCORES", 500)  # 2 queries per chunk
    check_against_reference(index, contents, queries, exact=True)


# -- files ---------------------------------------------------------------------------------------


def data_dirs(directory):
    return sorted(name for name in os.listdir(directory) if name.startswith(storage.DATA_PREFIX))


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_and_load_return_the_same_results(backend, tmp_path):
    vectors, queries = mixture(330), mixture(10, seed=1)
    index = visnet.index.get(BACKENDS[backend])
    index.add_batch([f"p{i}" for i in range(300)], vectors[:300])
    index.search(queries[0], 1)
    for i in range(3):  # a few changes left in the buffer and as tombstones
        index.update(f"p{i}", vectors[300 + i])
        index.remove(f"p{10 + i}")
        index.add(f"n{i}", vectors[310 + i])
    before = index.search_batch(queries, 10)
    manifest = index.save(str(tmp_path / "index"), model={"name": "visnet", "version": "1.0"})

    loaded = VectorIndex.load(str(tmp_path / "index"), expected_model="1.0")
    assert type(loaded) is type(index) and loaded.get_config() == index.get_config()
    assert loaded.ids() == index.ids() and getattr(loaded, "pending", 0) == getattr(index, "pending", 0)
    after = loaded.search_batch(queries, 10)
    assert after[0].tolist() == before[0].tolist()
    np.testing.assert_array_equal(after[1], before[1])

    on_disk = json.load(open(tmp_path / "index" / "manifest.json"))
    assert on_disk == manifest
    assert (manifest["format"], manifest["format_version"], manifest["kind"]) == ("visnet-index", 1, "index")
    assert (manifest["backend"], manifest["dim"], manifest["count"]) == (index.name, 16, 300)
    assert manifest["model"] == {"name": "visnet", "version": "1.0"}
    expected_files = {"vectors.npy", "ids.npy", "order.npy"} | ({"faiss.index"} if index.name == "faiss" else set())
    if index.live:  # the engine holds the vectors: the snapshot names the collection
        expected_files = set()
    assert set(manifest["files"]) == expected_files
    assert data_dirs(tmp_path / "index") == [manifest["data"]]
    for name, info in manifest["files"].items():
        assert info["sha256"] == storage.sha256(str(tmp_path / "index" / manifest["data"] / name))
    if not index.live:
        ids = np.load(tmp_path / "index" / manifest["data"] / "ids.npy", allow_pickle=False)
        assert ids.dtype.kind == "U"

    loaded.add("later", vectors[320])  # a loaded index keeps working
    assert "later" in loaded and loaded.search(vectors[320], 1)[0][0] == "later"
    second = loaded.save(str(tmp_path / "index"))
    assert data_dirs(tmp_path / "index") == [second["data"]]  # the old data directory is gone
    assert len(VectorIndex.load(str(tmp_path / "index"))) == 301


def test_an_empty_index_saves_and_loads(tmp_path):
    BallTreeIndex(leaf_size=3).save(str(tmp_path))
    loaded = VectorIndex.load(str(tmp_path))
    assert isinstance(loaded, BallTreeIndex) and len(loaded) == 0 and loaded.dim is None
    loaded.add("a", [0.0, 1.0])
    assert loaded.search([0.0, 2.0], 1) == [("a", 1.0)]


def test_loading_checks_manifest_checksums_and_model(tmp_path):
    directory = str(tmp_path / "index")
    with pytest.raises(FileNotFoundError, match=r"No saved index in .*manifest.json is missing"):
        VectorIndex.load(directory)
    index = BruteForceIndex()
    index.add_batch(["a", "b"], np.eye(2))
    manifest = index.save(directory, model={"name": "visnet", "version": "1.0"})

    with pytest.raises(ModelMismatchError, match=r"built with model version '1.0', but expected_model asks for version '2.0'"):
        VectorIndex.load(directory, expected_model="2.0")
    with pytest.raises(ModelMismatchError, match=r"model name 'visnet', but expected_model asks for name 'hog'"):
        VectorIndex.load(directory, expected_model={"name": "hog"})
    with pytest.raises(ValueError, match=r"holds a 'brute' index, not a BallTreeIndex"):
        BallTreeIndex.load(directory)

    vectors = os.path.join(directory, manifest["data"], "vectors.npy")
    data = bytearray(open(vectors, "rb").read())
    data[-1] ^= 0xFF
    open(vectors, "wb").write(bytes(data))
    with pytest.raises(IndexFileError, match=r"Checksum mismatch for .*vectors.npy"):
        VectorIndex.load(directory)
    os.remove(vectors)
    with pytest.raises(IndexFileError, match=r"vectors.npy is missing"):
        VectorIndex.load(directory)


def test_a_failed_save_leaves_the_previous_index_and_no_debris(tmp_path, monkeypatch):
    directory = str(tmp_path / "index")
    index = FaissIndex(kind="hnsw", M=8)
    index.add_batch(["a", "b"], np.eye(2))
    first = index.save(directory)
    index.add("c", [1.0, 1.0])

    def full_disk(data_dir):
        raise OSError("No space left on device")

    monkeypatch.setattr(index, "_write_structure", full_disk)
    with pytest.raises(OSError, match="No space left"):
        index.save(directory)
    assert data_dirs(directory) == [first["data"]]
    assert VectorIndex.load(directory).ids() == ["a", "b"]


def test_a_save_killed_before_its_commit_leaves_the_previous_index(tmp_path):
    directory = str(tmp_path / "index")
    queries = mixture(5, seed=1)
    small = BallTreeIndex()
    small.add_batch([f"p{i}" for i in range(50)], mixture(50))
    small.save(directory, model={"version": "1"})
    expected = small.search_batch(queries, 5)

    script = textwrap.dedent(f"""
        import numpy as np
        import visnet.index
        index = visnet.index.get("balltree")
        vectors = np.random.default_rng(0).normal(size=(20000, 16)).astype(np.float32)
        index.add_batch([f"big{{i}}" for i in range(20000)], vectors)
        index.save({directory!r}, model={{"version": "2"}})
    """)
    env = {**os.environ, storage.PAUSE_ENV: "60"}
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    try:
        lines = []
        for line in process.stderr:
            lines.append(line)
            if storage.PAUSE_MESSAGE in line:
                break
        assert storage.PAUSE_MESSAGE in "".join(lines), "".join(lines)
        assert len(data_dirs(directory)) == 2  # the new data is on disk, not yet committed
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        watchdog.cancel()
        process.stderr.close()

    loaded = VectorIndex.load(directory, expected_model="1")
    assert len(loaded) == 50
    after = loaded.search_batch(queries, 5)
    assert after[0].tolist() == expected[0].tolist()
    np.testing.assert_array_equal(after[1], expected[1])
    manifest = small.save(directory, model={"version": "1"})
    assert data_dirs(directory) == [manifest["data"]]  # the orphan is cleaned up


def kill_when_a_save_pauses(script: str, timeout: float) -> tuple[int, list[str]]:
    """Runs `script`, which prints "ack ID" after each acknowledged write and makes one save pause before
    its commit (`storage.PAUSE_ENV`); SIGKILLs it there. Returns (exit code, the acknowledged ids)."""
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    try:
        for line in process.stderr:
            if storage.PAUSE_MESSAGE in line:
                break
        process.send_signal(signal.SIGKILL)
        code = process.wait(timeout=30)
        acknowledged = [line.split()[1] for line in process.stdout.read().splitlines() if line.startswith("ack ")]
    finally:
        watchdog.cancel()
        process.stdout.close()
        process.stderr.close()
    return code, acknowledged


def test_a_milvus_gallery_killed_mid_write_keeps_every_acknowledged_item(tmp_path):
    """Milvus holds the vectors, the snapshot the catalogue: killed after a vector reached Milvus but
    before the save that would acknowledge it, the gallery loads with every acknowledged item and
    without the half-written one (`Gallery._reconcile`)."""
    directory, uri = str(tmp_path / "gallery"), str(tmp_path / "gallery.db")
    script = textwrap.dedent(f"""
        import os, sys
        import numpy as np
        import visnet.index
        from visnet.index import storage
        gallery = visnet.index.Gallery(visnet.index.get("milvus", uri={uri!r}, index_type="FLAT"))
        vectors = np.random.default_rng(0).normal(size=(40, 16)).astype(np.float32)
        for i in range(40):
            gallery.add({{"id": f"p{{i}}", "label": "shirt"}}, vectors[i])
            if i == 25:
                os.environ[storage.PAUSE_ENV] = "60"  # this save stops before its commit
            gallery.save({directory!r}, model={{"name": "m", "version": "1"}})
            print(f"ack p{{i}}", flush=True)
    """)
    code, acknowledged = kill_when_a_save_pauses(script, timeout=120)
    assert code == -signal.SIGKILL
    assert acknowledged == [f"p{i}" for i in range(25)]

    gallery = Gallery.load(directory, expected_model={"name": "m", "version": "1"})
    assert gallery.ids() == acknowledged  # p25 reached Milvus, was never acknowledged, and is gone
    assert [hit["id"] for hit in gallery.search(np.random.default_rng(0).normal(size=(40, 16))[3], 1)] == ["p3"]
    with pytest.raises(ModelMismatchError):
        Gallery.load(directory, expected_model={"name": "m", "version": "2"})
    with pytest.raises(ModelMismatchError):  # the collection itself remembers its model
        gallery.save(str(tmp_path / "other"), model={"name": "m", "version": "2"})


# -- catalogue -----------------------------------------------------------------------------------


def test_catalogue_add_get_update_remove(tmp_path):
    path = str(tmp_path / "catalogue.sqlite")
    catalogue = Catalogue(path)
    catalogue.add({"id": "p1", "image": "images/p1.jpg", "label": "dress",
                   "labels": {"colour": "red", "season": "summer"}, "text": "red striped dress"})
    assert catalogue.add_many([{"id": "p2", "label": "bag"}, {"id": "p3"}]) == 2
    assert len(catalogue) == 3 and catalogue.ids() == ["p1", "p2", "p3"]
    assert "p2" in catalogue and "zz" not in catalogue and 3 not in catalogue
    p1 = catalogue.get("p1")
    assert {k: p1[k] for k in ("id", "image", "label", "labels", "text")} == {
        "id": "p1", "image": "images/p1.jpg", "label": "dress",
        "labels": {"colour": "red", "season": "summer"}, "text": "red striped dress"}
    assert p1["created"] == p1["updated"] and p1["created"].endswith("+00:00")
    assert catalogue.get("p3") == {**catalogue.get("p3"), "image": None, "label": None, "labels": {}, "text": None}
    assert catalogue.get("nope") is None
    assert set(catalogue.get_many(["p1", "p3", "nope"])) == {"p1", "p3"}

    with pytest.raises(ValueError, match=r"Id 'p1' is already in the catalogue; pass upsert=True"):
        catalogue.add_many([{"id": "p4"}, {"id": "p1"}])
    assert "p4" not in catalogue  # all or none
    with pytest.raises(ValueError, match=r"Unknown catalogue field\(s\): colour. Fields: id, image, label, labels, text"):
        catalogue.add({"id": "p5", "colour": "red"})
    with pytest.raises(ValueError, match=r"labels must be a dict with string keys. Received: labels=\['red'\]"):
        catalogue.add({"id": "p5", "labels": ["red"]})
    with pytest.raises(ValueError, match=r"image must be a string or None. Received: image=3"):
        catalogue.add({"id": "p5", "image": 3})
    with pytest.raises(ValueError, match=r"Each item must be a dict with an 'id'"):
        catalogue.add({"label": "x"})

    updated = catalogue.update("p2", label="handbag", text="leather bag")
    assert (updated["label"], updated["text"], updated["created"]) == ("handbag", "leather bag",
                                                                      catalogue.get("p2")["created"])
    assert updated["updated"] >= updated["created"]
    with pytest.raises(KeyError, match=r"Unknown id: 'zz' is not in the catalogue"):
        catalogue.update("zz", label="x")
    with pytest.raises(ValueError, match=r"label must be a string or None. Received: label=1"):
        catalogue.update("p2", label=1)

    catalogue.add({"id": "p1", "label": "skirt"}, upsert=True)
    assert (catalogue.get("p1")["label"], catalogue.get("p1")["image"]) == ("skirt", None)
    assert catalogue.get("p1")["created"] == p1["created"] and catalogue.ids() == ["p1", "p2", "p3"]

    catalogue.remove("p3")
    assert "p3" not in catalogue
    with pytest.raises(KeyError, match=r"Unknown id: 'p3' is not in the catalogue"):
        catalogue.remove("p3")

    sneaky = "x'); DROP TABLE items; --"
    catalogue.add({"id": sneaky, "text": sneaky})
    assert catalogue.get(sneaky)["text"] == sneaky and len(catalogue) == 3
    catalogue.close()
    with Catalogue(path) as reopened:
        assert reopened.ids() == ["p1", "p2", sneaky]


def test_catalogue_backup_restore_and_threads(tmp_path):
    catalogue = Catalogue()
    catalogue.add_many([{"id": f"p{i}", "labels": {"n": i}} for i in range(5)])

    def add(start):
        for i in range(start, start + 25):
            catalogue.add({"id": f"t{i}", "text": f"item {i}"})

    threads = [threading.Thread(target=add, args=(25 * t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(catalogue) == 105

    backup = str(tmp_path / "backup.sqlite")
    catalogue.backup(backup)
    with pytest.raises(FileExistsError, match="exists"):
        catalogue.backup(backup)
    restored = Catalogue.restore(backup)
    assert restored.ids() == catalogue.ids() and restored.get("p3") == catalogue.get("p3")
    restored.add({"id": "new"})
    assert "new" not in Catalogue.restore(backup)  # the backup file is only read


# -- gallery -------------------------------------------------------------------------------------


def gallery_items(n):
    return [{"id": f"p{i}", "image": f"images/p{i}.jpg", "label": f"type{i % 4}",
             "labels": {"colour": ["red", "blue"][i % 2]}, "text": f"product {i}"} for i in range(n)]


def test_gallery_keeps_index_and_catalogue_in_step(tmp_path):
    vectors, queries = mixture(41), mixture(6, seed=1)
    items = gallery_items(41)
    gallery = Gallery({"name": "balltree", "leaf_size": 4})
    gallery.add_many(items[:40], vectors[:40])
    gallery.add(items[40], vectors[40])
    hits = gallery.search(vectors[3], k=5)
    assert hits[0]["id"] == "p3" and hits[0]["score"] == pytest.approx(1.0, abs=1e-6)
    assert set(hits[0]) == {"id", "score", "image", "label", "labels", "text", "created", "updated"}
    assert (hits[0]["label"], hits[0]["labels"]) == ("type3", {"colour": "blue"})
    assert [hit["id"] for hit in hits] == [id for id, _ in gallery.index.search(vectors[3], 5)]

    record = gallery.update("p3", vector=-vectors[3], label="moved")
    assert record["label"] == "moved" and gallery.get("p3")["label"] == "moved"
    assert gallery.search(vectors[3], k=1)[0]["id"] != "p3"
    assert gallery.update("p5")["id"] == "p5"  # touch: only the timestamp changes
    gallery.remove("p4")
    assert "p4" not in gallery and "p4" not in gallery.catalogue and len(gallery) == 40
    with pytest.raises(KeyError, match=r"Unknown id: 'p4' is not in the gallery"):
        gallery.update("p4", label="x")
    with pytest.raises(ValueError, match=r"The vector of id 'bad' has NaN"):
        gallery.add({"id": "bad"}, [np.nan] * 16)
    assert "bad" not in gallery.catalogue  # rolled back
    with pytest.raises(ValueError, match=r"Id 'p1' is already in the catalogue"):
        gallery.add({"id": "p1"}, vectors[0])
    with pytest.raises(ValueError, match=r"Unknown catalogue field\(s\): price"):
        gallery.update("p1", vector=vectors[9], price=3)
    np.testing.assert_allclose(gallery.index.vector("p1"), unit(vectors[1]))  # nothing changed

    manifest = gallery.save(str(tmp_path / "gallery"), model={"name": "visnet", "version": "7"})
    assert manifest["kind"] == "gallery" and "catalogue.sqlite" in manifest["files"]
    assert manifest["catalogue"] == {"file": "catalogue.sqlite", "count": 40}
    loaded = Gallery.load(str(tmp_path / "gallery"), expected_model={"name": "visnet", "version": "7"})
    assert loaded.ids() == gallery.ids()
    assert loaded.search_batch(queries, 5) == gallery.search_batch(queries, 5)
    loaded.add({"id": "new"}, vectors[0])
    assert len(Gallery.load(str(tmp_path / "gallery"))) == 40  # the snapshot is untouched and still verifies
    with pytest.raises(ModelMismatchError, match=r"version '7', but expected_model asks for version '8'"):
        Gallery.load(str(tmp_path / "gallery"), expected_model="8")
    gallery.index.save(str(tmp_path / "bare"))
    with pytest.raises(IndexFileError, match=r"holds an index without a catalogue"):
        Gallery.load(str(tmp_path / "bare"))
    with pytest.raises(ValueError, match=r"The index and the catalogue hold different ids: 40 only in the index"):
        Gallery(gallery.index, Catalogue())


def test_gallery_serves_searches_while_it_changes():
    vectors = mixture(200)
    gallery = Gallery("faiss-hnsw")
    gallery.add_many(gallery_items(100), vectors[:100])
    errors, found = [], []

    def search():
        try:
            for i in range(40):
                hits = gallery.search(vectors[i], k=3)
                found.append(all(hit["label"] is not None for hit in hits) and len(hits) == 3)
        except Exception as error:  # reported below
            errors.append(error)

    def change(start):
        try:
            for i in range(start, start + 25):
                gallery.add({"id": f"n{i}", "label": "new"}, vectors[100 + i])
                gallery.remove(f"p{i}")
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=search) for _ in range(2)] + [
        threading.Thread(target=change, args=(s,)) for s in (0, 25)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(found) == 80 and all(found)
    assert len(gallery) == 100 and set(gallery.ids()) == set(gallery.catalogue.ids())


@pytest.mark.parametrize("backend", ["brute", "faiss-hnsw", "milvus-flat"])
def test_gallery_query_expansion_equals_the_reference(backend):
    from visnet.index.expansion import Expansion, query_expansion

    vectors, queries = unit(mixture(60)), unit(mixture(5, seed=2))
    gallery = Gallery(BACKENDS[backend])
    gallery.add_many(gallery_items(60), vectors)
    for expansion in (Expansion(qe=1), Expansion(qe=3, alpha=3.0)):
        expected = query_expansion(queries, vectors, expansion.qe, expansion.alpha)
        want_ids, want_scores = reference(dict(zip([f"p{i}" for i in range(60)], vectors)), expected, 7)
        got = gallery.search_batch(queries, 7, expansion)
        assert [[hit["id"] for hit in row] for row in got] == want_ids
        np.testing.assert_allclose([[hit["score"] for hit in row] for row in got], want_scores, atol=1e-5)
        assert [hit["id"] for hit in gallery.search(queries[0], 7, expansion)] == want_ids[0]
    # No expansion, or qe=0, is the plain search; DBA is refused for a live gallery.
    plain = [[hit["id"] for hit in row] for row in gallery.search_batch(queries, 7)]
    assert [[hit["id"] for hit in row] for row in gallery.search_batch(queries, 7, Expansion())] == plain
    assert plain == reference(dict(zip([f"p{i}" for i in range(60)], vectors)), queries, 7)[0]
    with pytest.raises(ValueError, match="database-side augmentation"):
        gallery.search(queries[0], 3, Expansion(qe=1, dba=3))
    assert Gallery("brute").search(queries[0], 3, Expansion(qe=2)) == []
