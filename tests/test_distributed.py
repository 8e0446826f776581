"""Rescoring on a real Dask LocalCluster (2 worker processes) with the shipped SevenNet and CHGNet models.

Every cluster run is compared byte for byte with a local run. Dask workers run
torch with one thread (Dask sets OMP_NUM_THREADS=1 in its workers), so the
local runs here do too: SevenNet's CPU kernels sum in an order that depends
on the thread count.
"""

from __future__ import annotations

import dataclasses

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")

from hetens.core.calculator import HeterogeneousEnsembleCalculator  # noqa: E402
from hetens.cli.main import main  # noqa: E402
from hetens.errors import MemberDroppedWarning  # noqa: E402
from hetens.distributed import EnsembleSpec, parse_cluster_spec, score_on_cluster  # noqa: E402
from hetens.distributed.cluster import jobqueue_arguments, model_friendly_workers  # noqa: E402
from hetens.distributed.store import ChunkStore, store_folder  # noqa: E402
from hetens.jobs.score_live import score_live  # noqa: E402
from hetens.rescore.precomputed_scoring import score_precomputed  # noqa: E402

SPECS = ("sevenn:7net-0", "chgnet:0.3.0")
ENSEMBLE = EnsembleSpec(models=SPECS, device="cpu")
REPO = Path(__file__).resolve().parent.parent
CHUNK = 32  # frames per chunk: two batches of 16
SMALL_CHUNK = 16  # one batch per chunk


def _frames(count: int, seed: int) -> list:
    """Rattled W cells of 2, 4, 8 and 16 atoms, with synthetic DFT-like labels (for --reference)."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(count):
        repeat = [(1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2)][k % 4]
        atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(repeat)
        atoms.rattle(0.03 + 0.01 * (k % 5), seed=seed * 1000 + k)
        atoms.info["config_type"] = f"c{k}"
        atoms.calc = SinglePointCalculator(
            atoms, energy=-13.0 * len(atoms) + rng.normal(), forces=rng.normal(scale=0.3, size=(len(atoms), 3))
        )
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two files, 200 frames in all."""
    folder = tmp_path_factory.mktemp("inputs")
    paths = [folder / "md_a.extxyz", folder / "md_b.extxyz"]
    write(paths[0], _frames(130, 1))
    write(paths[1], _frames(70, 2))
    return [str(p) for p in paths]


@pytest.fixture(scope="module")
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def local_bytes(inputs, tmp_path_factory, one_thread, sevenn_member, chgnet_member):
    """The local run's output (score_live), the reference every cluster run must reproduce."""
    out = tmp_path_factory.mktemp("local") / "scored.extxyz"
    calc = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])
    score_live(inputs, out, calc, progress="off")
    return out.read_bytes()


@pytest.fixture(scope="module")
def client():
    """A real LocalCluster: 2 worker processes, 1 thread each; workers keep their ensemble across tests."""
    with model_friendly_workers():
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _frame_count(data: bytes) -> int:
    return data.count(b"Lattice=")


def _busy(client) -> bool:
    """Whether a worker is still scoring a chunk (also one whose future was cancelled)."""
    from hetens.distributed.tasks import busy

    return any(client.run(busy).values())


def _wait_idle(client, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while _busy(client) and time.monotonic() < end:
        time.sleep(0.2)


def test_cluster_run_is_the_local_run_bit_for_bit(tmp_path, inputs, local_bytes, client):
    out = tmp_path / "scored.extxyz"
    records = []
    result = score_on_cluster(
        inputs, out, ENSEMBLE, cluster=client, chunk_size=CHUNK, progress="off", on_chunk=records.append
    )
    assert out.read_bytes() == local_bytes
    info = result.report["cluster"]
    assert result.report["n_frames"] == 200 and info["chunks"] == len(records) == 7
    assert info["chunks_computed"] == len(records) and info["retries"] == 0
    assert not store_folder(out).exists()  # removed once assembled
    # Each worker process loads the ensemble at most once, then keeps it.
    loads = [r["pid"] for r in records if r["load_s"] > 0]
    assert len(loads) == len(set(loads)) <= 2
    assert len({r["pid"] for r in records}) == 2  # both workers took chunks
    # Chunks hold whole local batches (16 frames, cut at the end of a file): 130 + 70 frames.
    frames = [r["frames"] for r in sorted(records, key=lambda r: r["chunk"])]
    assert frames == [32, 32, 32, 32, 2 + 16, 32, 16 + 6]


def test_a_killed_worker_is_replaced_and_the_output_unchanged(tmp_path, inputs, local_bytes, client):
    """The second file alone (70 frames, 3 chunks): its frames are the end of the local run's output."""
    out = tmp_path / "scored.extxyz"
    store = store_folder(out)
    killed = []

    def kill_one_mid_chunk(record):
        if killed:
            return
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # a chunk started but not finished: kill its worker
            for marker in sorted((store / "attempts").glob("chunk-*")):
                stem, pid, _ = marker.name.rsplit(".", 2)  # chunk-N.HOST.PID.NS
                chunk = stem.split(".", 1)[0]
                if not (store / f"{chunk}.json").exists():
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append((chunk, int(pid)))
                    return
            time.sleep(0.05)

    result = score_on_cluster(
        inputs[1], out, ENSEMBLE, cluster=client, chunk_size=CHUNK, progress="off", on_chunk=kill_one_mid_chunk
    )
    assert killed, "no chunk was running when the first one finished"
    assert _frame_count(out.read_bytes()) == 70 and local_bytes.endswith(out.read_bytes())
    assert result.report["cluster"]["retries"] >= 1
    assert result.report["cluster"]["chunks_computed"] == result.report["cluster"]["chunks"]


def test_interrupted_run_resumes_without_recomputing(tmp_path, inputs, local_bytes, client):
    """The first file alone (130 frames, 9 chunks of one batch): its frames start the local run's output.

    Chunks already running when the run stops still finish (at most one per
    worker), so with 9 chunks at least 4 are left for the second run.
    """
    out = tmp_path / "scored.extxyz"
    store = store_folder(out)
    seen = []

    def stop_after_three(record):
        seen.append(record["chunk"])
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as stopped:
        score_on_cluster(
            inputs[0], out, ENSEMBLE, cluster=client, chunk_size=SMALL_CHUNK, progress="off", on_chunk=stop_after_three
        )
    assert any("run the same command again" in note for note in stopped.value.__notes__)
    assert not out.exists()
    _wait_idle(client)  # chunks already running when it stopped may still finish
    finished = {p.stem: p.stat().st_mtime_ns for p in store.glob("chunk-*.json")}
    assert 3 <= len(finished) < 9, sorted(finished)

    computed = []
    result = score_on_cluster(
        inputs[0], out, ENSEMBLE, cluster=client, chunk_size=SMALL_CHUNK, progress="off", keep_chunks=True,
        on_chunk=lambda r: computed.append(f"chunk-{r['chunk']:06d}"),
    )
    expected = out.read_bytes()
    assert _frame_count(expected) == 130 and local_bytes.startswith(expected)
    assert computed and not set(computed) & set(finished)  # nothing finished before was computed again
    assert {p.stem: p.stat().st_mtime_ns for p in store.glob("chunk-*.json") if p.stem in finished} == finished
    info = result.report["cluster"]
    assert info["chunks_reused"] == len(finished) and info["chunks_computed"] == len(computed)
    assert info["chunks_reused"] + info["chunks_computed"] == info["chunks"]

    # Everything done: a third run only assembles (it never starts the cluster it names).
    out.unlink()
    again = score_on_cluster(inputs[0], out, ENSEMBLE, cluster="local:1", chunk_size=SMALL_CHUNK, progress="off")
    assert out.read_bytes() == expected
    assert again.report["cluster"]["chunks_computed"] == 0 and again.report["cluster"]["workers"] is None
    assert not store.exists()


def test_cli_on_a_scheduler_address_with_reference(tmp_path, inputs, client, one_thread, capsys):
    """`hetens score` run locally and with --cluster (a scheduler address): the same bytes, the same report.

    Both runs score through :func:`hetens.jobs.score_live.score_batch`."""
    common = [
        "score", inputs[1], "--models", *SPECS, "--device", "cpu", "--index", "::2", "--reference", inputs[1],
        "--json",
    ]
    local = tmp_path / "local.extxyz"
    assert main([*common, "-o", str(local), "--progress", "off"]) == 0
    expected = json.loads(capsys.readouterr().out)
    out = tmp_path / "scored.extxyz"
    code = main([
        *common, "-o", str(out), "--cluster", client.scheduler.address, "--chunk-size", "16", "--progress", "log",
    ])
    assert code == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert out.read_bytes() == local.read_bytes()
    assert report["spearman_rho"] == expected["spearman_rho"]
    assert report["member_force_rmse"] == expected["member_force_rmse"]
    assert report["U_quantiles"] == expected["U_quantiles"] and report["n_frames"] == expected["n_frames"] == 35
    assert report["cluster"]["chunks"] == 3  # 35 frames: batches of 16, 16 and 3
    assert "Dask dashboard: http" in captured.err and "3 chunks computed" in captured.err


def test_dropped_members_on_a_cluster_as_locally(tmp_path, client, one_thread, sevenn_member, chgnet_member):
    """``on_member_error="drop"`` reaches the workers: CHGNet fails on a slab whose periodic images
    along its open direction fall within its cutoff (real; a molecule without a cell it now takes)."""
    frames = _frames(24, 3)
    frames[5] = Atoms("W2", positions=[[0, 0, 0], [0, 0, 2.3]], cell=[3.2, 3.2, 4.0], pbc=[True, True, False])
    write(tmp_path / "in.extxyz", frames)
    witness = dataclasses.replace(sevenn_member, name="sevenn-witness")  # two members of U survive the drop
    local = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member], witnesses=[witness],
                                            on_member_error="drop")
    with pytest.warns(MemberDroppedWarning):
        expected = score_live(tmp_path / "in.extxyz", tmp_path / "local.extxyz", local, progress="off")
    spec = EnsembleSpec(models=SPECS, witnesses=("sevenn:7net-0@name=sevenn-witness",), device="cpu",
                        on_member_error="drop")
    result = score_on_cluster(tmp_path / "in.extxyz", tmp_path / "out.extxyz", spec, cluster=client,
                              chunk_size=16, progress="off")
    assert (tmp_path / "out.extxyz").read_bytes() == (tmp_path / "local.extxyz").read_bytes()
    assert result.report["dropped_frames"] == expected.report["dropped_frames"] == {
        "sevenn:7net-0": 0, "chgnet:0.3.0": 1, "sevenn-witness": 0
    }


def test_precomputed_on_a_local_cluster_and_select_reads_it(tmp_path, capsys):
    """`hetens score --precomputed` locally and with `--cluster local:2`: the same bytes (and the
    Python API's); `select` gives the same answer on both outputs."""
    rng = np.random.default_rng(5)
    base = _frames(150, 3)
    paths = []
    for name in ("m1", "m2", "m3"):
        frames = []
        for atoms in base:
            copy = atoms.copy()
            forces = atoms.calc.results["forces"] + rng.normal(scale=0.1, size=(len(atoms), 3))
            copy.calc = SinglePointCalculator(copy, energy=atoms.calc.results["energy"] + rng.normal(scale=0.05),
                                              forces=forces, stress=rng.normal(scale=0.01, size=6))
            frames.append(copy)
        paths.append(tmp_path / f"{name}.extxyz")
        write(paths[-1], frames)
    reference = tmp_path / "dft.extxyz"
    write(reference, base)
    common = [
        "score", "--precomputed", *map(str, paths), "--force-rmse", "0.2", "0.3", "0.25",
        "--reference", str(reference), "--index", "5:", "--keep-member-forces", "--json", "--progress", "off",
    ]
    assert main([*common, "-o", str(tmp_path / "local.extxyz")]) == 0  # `hetens score` here, then on local:2
    local = json.loads(capsys.readouterr().out)
    assert main([*common, "-o", str(tmp_path / "cluster.extxyz"), "--cluster", "local:2", "--chunk-size", "40"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (tmp_path / "cluster.extxyz").read_bytes() == (tmp_path / "local.extxyz").read_bytes()
    assert result["spearman_rho"] == local["spearman_rho"] and result["n_frames"] == local["n_frames"] == 145
    assert result["cluster"]["workers"] == 2 and result["cluster"]["chunks"] == 4
    python = score_precomputed(paths, tmp_path / "python.extxyz", progress="off", force_rmse=[0.2, 0.3, 0.25],
                               reference=reference, index="5:", keep_member_forces=True)
    assert (tmp_path / "python.extxyz").read_bytes() == (tmp_path / "local.extxyz").read_bytes()
    assert python.report["spearman_rho"] == local["spearman_rho"]
    answers = []
    for name in ("local.extxyz", "cluster.extxyz"):
        assert main(["select", str(tmp_path / name), "--threshold", "0.2", "0.4", "--json"]) == 0
        answers.append(json.loads(capsys.readouterr().out)["thresholds"])
    assert answers[0] == answers[1]


def test_cluster_specs_and_the_sample_slurm_file():
    assert parse_cluster_spec("local:3").n_workers == 3
    assert parse_cluster_spec("tcp://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    for bad in ("local:0", "local:x", "mycluster"):
        with pytest.raises(ValueError, match="local:N"):
            parse_cluster_spec(bad)
    spec = parse_cluster_spec(str(REPO / "examples" / "cluster-slurm.yaml"))
    assert spec.kind == "jobqueue" and spec.n_workers == 4 and spec.worker_threads == 8
    name, kwargs = jobqueue_arguments(spec.settings)
    assert name == "SLURMCluster"
    assert kwargs["cores"] == kwargs["processes"] == 1 and kwargs["job_cpu"] == 8
    assert kwargs["job_extra_directives"] == ["--gres=gpu:1", "--constraint=a100"]
    assert kwargs["queue"] == "gpu" and kwargs["memory"] == "48GB"


def test_a_chunk_folder_of_another_run_is_not_mixed_in(tmp_path):
    out = tmp_path / "scored.extxyz"
    ChunkStore.open(out, {"inputs": ["a"]})
    assert ChunkStore.open(out, {"inputs": ["a"]}).run_id  # the same run: reused
    with pytest.raises(FileExistsError, match="another run.*--restart"):
        ChunkStore.open(out, {"inputs": ["b"]})
    ChunkStore.open(out, {"inputs": ["b"]}, restart=True)
    assert json.loads((store_folder(out) / "manifest.json").read_text())["inputs"] == ["b"]


def test_import_hetens_does_not_import_dask():
    code = "import sys, hetens, hetens.distributed; sys.exit('distributed' in sys.modules or 'dask' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
