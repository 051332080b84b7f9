"""The `milvus` backend against a real Milvus server, not Milvus Lite: the standalone Milvus 2.3 that the
`milvus` package installs (`milvus-server`, a dev dependency), started here on its default ports. The same
client code as with Milvus Lite, over the network, with the engine's consistency levels in play."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np
import pytest
from test_index import (
    change_at_random,
    check_against_reference,
    kill_when_a_save_pauses,
    mixture,
    unit,
)

import visnet.index
from visnet.index import Gallery, ModelMismatchError, VectorIndex

URI = "http://127.0.0.1:19530"


def _port_busy(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    binary = shutil.which("milvus-server") or os.path.join(os.path.dirname(sys.executable), "milvus-server")
    if not os.path.exists(binary):
        pytest.skip("milvus-server is not installed (pip install milvus: the embedded Milvus standalone)")
    if _port_busy(19530) or _port_busy(2379):
        pytest.skip("ports 19530/2379 are taken: another Milvus or etcd runs on this machine")
    data = tmp_path_factory.mktemp("milvus-server")
    log = open(data / "server.log", "w")
    process = subprocess.Popen([binary, "--data", str(data)], stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        from pymilvus import MilvusClient

        deadline = time.monotonic() + 240
        while True:
            if process.poll() is not None:
                pytest.fail(f"milvus-server stopped: {open(data / 'server.log').read()[-2000:]}")
            try:
                MilvusClient(uri=URI, timeout=5).list_collections()
                break
            except Exception:  # noqa: BLE001 - not up yet (pymilvus raises its own types)
                if time.monotonic() > deadline:
                    pytest.fail(f"milvus-server did not answer in 240 s: {open(data / 'server.log').read()[-2000:]}")
                time.sleep(1)
        yield URI
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        _kill_running_from(str(data))  # the server runs `DATA/bin/milvus` in a session of its own
        log.close()


def _kill_running_from(data: str) -> None:
    """SIGKILL every process whose command line names `data` (Linux /proc)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if data.encode() in handle.read():
                    os.kill(int(pid), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def collection() -> str:
    return "t" + uuid.uuid4().hex[:12]


def test_search_matches_the_exhaustive_reference_on_a_server(server):
    vectors, queries = mixture(400), mixture(30, seed=1)
    contents = {f"p{i}": v for i, v in enumerate(vectors)}
    exact = visnet.index.get("milvus", uri=server, collection=collection(), index_type="FLAT")
    exact.add_batch(list(contents), vectors)
    assert check_against_reference(exact, contents, queries, exact=True) == 1.0
    graph = visnet.index.get("milvus", uri=server, collection=collection(), index_type="HNSW", M=16)
    graph.add_batch(list(contents), vectors)
    graph.build()
    assert check_against_reference(graph, contents, queries, exact=False) >= 0.95


def test_changes_on_a_server_match_a_fresh_exact_search(server):
    rng = np.random.default_rng(7)
    pool, queries = mixture(400, seed=2), mixture(10, seed=3)
    index = visnet.index.get("milvus", uri=server, collection=collection(), index_type="FLAT")
    contents = {f"p{i}": pool[i] for i in range(150)}
    index.add_batch(list(contents), pool[:150])
    fresh = 150
    for step in range(60):
        fresh = change_at_random(index, contents, pool, rng, fresh, ("add", "update", "remove"), p=None)
        if step % 20 == 0:  # read-your-writes: the Session level sees this client's changes at once
            assert check_against_reference(index, contents, queries, exact=True) == 1.0
    assert check_against_reference(index, contents, queries, exact=True) == 1.0


def test_ties_come_in_insertion_order_and_bad_input_is_refused_on_a_server(server):
    index = visnet.index.get("milvus", uri=server, collection=collection(), index_type="FLAT")
    same = np.array([1.0, 2.0, 0.0, 0.0], np.float32)
    index.add_batch(["c", "a"], [same, 2 * same])
    index.add_batch([f"o{i}" for i in range(10)], -np.abs(np.random.default_rng(0).normal(size=(10, 4))) - [3, 0, 0, 0])
    index.add("b", 0.5 * same)
    index.update("c", 4 * same)  # keeps its place
    assert [id for id, _ in index.search(same, k=3)] == ["c", "a", "b"]
    with pytest.raises(ValueError, match="already in the index"):
        index.add("a", same)
    with pytest.raises(KeyError, match="Unknown id"):
        index.remove_batch(["a", "zz"])
    with pytest.raises(ValueError, match="dim=4"):
        index.add("d", [1.0, 2.0])
    assert "a" in index and len(index) == 13
    np.testing.assert_allclose(index.vector("a"), unit(2 * same), atol=1e-6)


def test_a_gallery_on_a_server_saves_reconnects_and_keeps_its_model(server, tmp_path):
    name = collection()
    gallery = Gallery(visnet.index.get("milvus", uri=server, collection=name, index_type="HNSW"))
    vectors = mixture(50)
    gallery.add_many([{"id": f"p{i}", "label": "shirt"} for i in range(50)], vectors)
    gallery.save(str(tmp_path / "gallery"), model={"name": "m", "version": "1"})
    loaded = Gallery.load(str(tmp_path / "gallery"), expected_model={"name": "m", "version": "1"})
    assert loaded.index.uri == server and len(loaded) == 50
    assert loaded.search(vectors[7], 1)[0]["id"] == "p7"
    with pytest.raises(ModelMismatchError):
        loaded.save(str(tmp_path / "other"), model={"name": "m", "version": "2"})
    other_client = VectorIndex.load(str(tmp_path / "gallery"))  # another client of the same collection
    assert other_client.ids() == [f"p{i}" for i in range(50)]


def test_a_gallery_on_a_server_killed_mid_write_keeps_every_acknowledged_item(server, tmp_path):
    directory, name = str(tmp_path / "gallery"), collection()
    script = textwrap.dedent(f"""
        import os
        import numpy as np
        import visnet.index
        from visnet.index import storage
        gallery = visnet.index.Gallery(visnet.index.get("milvus", uri={server!r}, collection={name!r},
                                                        index_type="FLAT"))
        vectors = np.random.default_rng(0).normal(size=(30, 16)).astype(np.float32)
        for i in range(30):
            gallery.add({{"id": f"p{{i}}"}}, vectors[i])
            if i == 12:
                os.environ[storage.PAUSE_ENV] = "60"  # this save stops before its commit
            gallery.save({directory!r}, model={{"version": "1"}})
            print(f"ack p{{i}}", flush=True)
    """)
    _, acknowledged = kill_when_a_save_pauses(script, timeout=180)
    assert acknowledged == [f"p{i}" for i in range(12)]
    gallery = Gallery.load(directory)
    assert gallery.ids() == acknowledged  # p12 reached the server, was never acknowledged, and is gone
