"""hetens.distributed.store: the chunk folder that lets a cluster run resume (no cluster, no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hetens.distributed.store import ChunkStore, run_id_of, store_folder

IDENTITY = {"inputs": [["in.extxyz", 123, 456]], "ensemble": {"members": ["a", "b"]}, "batch_size": 16}


def test_run_id_is_a_stable_hash_of_the_identity():
    assert run_id_of(IDENTITY) == run_id_of(json.loads(json.dumps(IDENTITY)))
    assert run_id_of(dict(reversed(list(IDENTITY.items())))) == run_id_of(IDENTITY)  # key order is not identity
    assert len(run_id_of(IDENTITY)) == 16 and int(run_id_of(IDENTITY), 16) >= 0
    assert run_id_of({**IDENTITY, "batch_size": 8}) != run_id_of(IDENTITY)


def test_store_folder_sits_beside_the_output(tmp_path):
    assert store_folder(tmp_path / "out.extxyz") == tmp_path / "out.extxyz.hetens-chunks"
    assert store_folder("scored.xyz").name == "scored.xyz.hetens-chunks"


def test_save_record_and_assemble(tmp_path):
    output = tmp_path / "out.extxyz"
    store = ChunkStore.open(output, IDENTITY)
    assert store.folder == store_folder(output).resolve() and store.run_id == run_id_of(IDENTITY)
    manifest = json.loads((store.folder / "manifest.json").read_text())
    assert manifest == {"run_id": store.run_id, **json.loads(json.dumps(IDENTITY))}
    assert store.record(0) is None

    store.mark_attempt(1)
    store.mark_attempt(1)
    assert len(store.attempts(1)) == 2 and all(a.startswith("chunk-000001.") for a in store.attempts(1))
    assert store.attempts(0) == []
    u = np.array([0.1, 0.2, 0.3])
    record = store.save(1, "second chunk\n", {"u": u, "n_atoms": np.array([2, 3, 4])}, {"n_frames": 3})
    assert record == {"chunk": 1, "run_id": store.run_id, "attempts": 2, "n_frames": 3}
    assert store.record(1) == record
    assert store.path(1, ".extxyz").name == "chunk-000001.extxyz"
    arrays = store.arrays(1)
    assert set(arrays) == {"u", "n_atoms"}
    np.testing.assert_array_equal(arrays["u"], u)
    store.save(0, "first chunk\n", {"u": np.zeros(1)}, {"n_frames": 1})
    assert store.record(0)["attempts"] == 0
    # No temporary files are left beside the chunks (every file is written atomically).
    assert sorted(p.name for p in store.folder.iterdir()) == [
        "attempts", "chunk-000000.extxyz", "chunk-000000.json", "chunk-000000.npz",
        "chunk-000001.extxyz", "chunk-000001.json", "chunk-000001.npz", "manifest.json",
    ]

    store.assemble(output, [0, 1])
    assert output.read_text() == "first chunk\nsecond chunk\n"
    store.remove()
    assert not store.folder.exists() and output.exists()


def test_a_chunk_is_done_only_when_complete_and_of_this_run(tmp_path):
    store = ChunkStore.open(tmp_path / "out.extxyz", IDENTITY)
    store.save(0, "frames\n", {"u": np.zeros(1)}, {})
    store.path(0, ".npz").unlink()  # a chunk without its arrays is not done
    assert store.record(0) is None
    store.save(0, "frames\n", {"u": np.zeros(1)}, {})
    assert store.record(0) is not None
    other = ChunkStore(store.folder, "another-run-id")
    assert other.record(0) is None  # a record of another run does not count
    store.path(0, ".json").write_text("{not json")
    assert store.record(0) is None  # nor does a damaged one


def test_reopening_resumes_or_refuses(tmp_path):
    output = tmp_path / "out.extxyz"
    store = ChunkStore.open(output, IDENTITY)
    store.save(3, "frames\n", {"u": np.ones(2)}, {"n_frames": 2})
    again = ChunkStore.open(output, IDENTITY)  # the same run: finished chunks are kept
    assert again.record(3) == store.record(3)
    changed = {**IDENTITY, "batch_size": 4}
    with pytest.raises(FileExistsError, match=r"holds chunks of another run .* re-run with --restart"):
        ChunkStore.open(output, changed)
    assert store.record(3) is not None  # refusing touched nothing
    fresh = ChunkStore.open(output, changed, restart=True)
    assert fresh.record(3) is None and fresh.run_id == run_id_of(changed)
    assert json.loads((fresh.folder / "manifest.json").read_text())["batch_size"] == 4
    # A folder without a readable manifest is discarded without asking.
    (fresh.folder / "manifest.json").unlink()
    fresh.save(0, "x\n", {"u": np.zeros(1)}, {})
    assert ChunkStore.open(output, IDENTITY).record(0) is None


def test_the_output_folder_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ChunkStore.open(tmp_path / "missing" / "out.extxyz", IDENTITY)
