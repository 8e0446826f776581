"""Live rescoring on one process against a Dask LocalCluster (``--cluster local:N``), in one run.

Scores the same frames (small rattled bcc W cells, 2-16 atoms) with the same
members twice each way and prints frames/s:

- local: :func:`hetens.jobs.score_live.score_live` in this process, torch with
  its default threads (every core), model load timed apart; then once with
  one torch thread (a worker's setting);
- cluster: :func:`hetens.distributed.score_on_cluster` on a LocalCluster of
  ``--workers`` processes (one thread each, Dask's default). The first run
  includes each worker's model load; the second reuses the loaded ensembles
  (steady state, what a long run sees).

Then the per-chunk overhead: a no-op task's round trip (one at a time, and
many at once), the pickled size and pickling time of one chunk task, and
from the second run: wall time x workers / chunks against the time a chunk
spends inside its task (the difference is scheduling, transfer and idle).

    .venv/bin/python benchmarks/bench_dask.py [--frames 2000] [--workers 2] [--chunk-size 256]
        [--batch-size 16] [--members sevenn:7net-0 chgnet:0.3.0]
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HETENS_OFFLINE", "1")


def small_cells(n: int):
    from ase.build import bulk

    shapes = [(1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2)]  # 2, 4, 8, 16 atoms
    frames = []
    for k in range(n):
        atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(shapes[k % 4])
        atoms.rattle(0.05, seed=k)
        frames.append(atoms)
    return frames


def noop(x):
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--members", nargs="+", default=["sevenn:7net-0", "chgnet:0.3.0"])
    parser.add_argument("--noop-tasks", type=int, default=200)
    args = parser.parse_args()

    import cloudpickle
    import distributed
    import torch
    from ase.io import write

    from hetens.core.calculator import HeterogeneousEnsembleCalculator
    from hetens.distributed import EnsembleSpec, score_on_cluster
    from hetens.distributed.cluster import model_friendly_workers
    from hetens.distributed.plan import frame_table
    from hetens.distributed.tasks import LiveChunk
    from hetens.core.factory import ignore_upstream_warnings
    from hetens.jobs.score_live import score_live

    ignore_upstream_warnings()
    folder = Path(tempfile.mkdtemp(prefix="bench_dask_"))
    frames_file = folder / "frames.extxyz"
    write(frames_file, small_cells(args.frames))
    n = args.frames
    print(f"{n} frames (2-16 atoms), members {' '.join(args.members)}, batch {args.batch_size}, "
          f"chunk {args.chunk_size} frames, {os.cpu_count()} cores")

    # ------------------------------------------------------------------ local
    start = time.perf_counter()
    calc = HeterogeneousEnsembleCalculator(args.members, device="cpu")
    load_local = time.perf_counter() - start
    local_rates = []
    for k in range(2):
        result = score_live(frames_file, folder / f"local{k}.extxyz", calc, batch_size=args.batch_size, progress="off")
        local_rates.append(n / result.elapsed_s)
    local_rate = max(local_rates)
    print(f"local   : load {load_local:.1f} s; {local_rate:.2f} frames/s (best of 2; torch threads "
          f"{torch.get_num_threads()})")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each Dask worker uses: the per-worker speed, without contention
    result = score_live(frames_file, folder / "local_1thread.extxyz", calc, batch_size=args.batch_size,
                        progress="off")
    torch.set_num_threads(threads)
    local_one = n / result.elapsed_s
    print(f"local   : {local_one:.2f} frames/s with 1 torch thread (one run)")

    # ---------------------------------------------------------------- cluster
    spec = EnsembleSpec(models=tuple(args.members), device="cpu")
    start = time.perf_counter()
    with model_friendly_workers():  # as --cluster local:N starts them
        cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    startup = time.perf_counter() - start
    try:
        runs = []
        for k in range(2):
            records = []
            t0 = time.perf_counter()
            result = score_on_cluster(frames_file, folder / f"cluster{k}.extxyz", spec, cluster=client,
                                      chunk_size=args.chunk_size, batch_size=args.batch_size, progress="off",
                                      on_chunk=records.append)
            runs.append((time.perf_counter() - t0, records, result))
        first_wall, first_records, _ = runs[0]
        wall, records, result = runs[1]
        loads = [r["load_s"] for r in first_records if r["load_s"] > 0]
        cluster_first = n / first_wall
        cluster_rate = n / wall
        print(f"cluster : LocalCluster start {startup:.1f} s; first run {cluster_first:.2f} frames/s "
              f"(worker loads {', '.join(f'{x:.1f}' for x in loads)} s); steady {cluster_rate:.2f} frames/s")
        print(f"ratio   : local:{args.workers} / local = {cluster_rate / local_rate:.3f} (steady), "
              f"{cluster_first / (n / (load_local + n / local_rate)):.3f} (first run vs local incl. load), "
              f"{cluster_rate / local_one:.3f} (steady vs local with 1 thread)")

        # -------------------------------------------------------- overhead
        latencies = []
        for i in range(min(args.noop_tasks, 50)):
            t0 = time.perf_counter()
            client.submit(noop, i, pure=False).result()
            latencies.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        client.gather(client.map(noop, range(args.noop_tasks), pure=False))
        burst = (time.perf_counter() - t0) / args.noop_tasks
        table = frame_table(frames_file)
        task = LiveChunk(0, str(folder), "x", spec, [table.rows(0, args.chunk_size)], None, {"batch_size": 16})
        t0 = time.perf_counter()
        blob = cloudpickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)
        pickle_s = time.perf_counter() - t0
        inside = [r["task_s"] for r in records]
        per_chunk_wall = wall * args.workers / len(records)
        print(f"overhead: no-op round trip {statistics.median(latencies) * 1e3:.1f} ms one at a time, "
              f"{burst * 1e3:.2f} ms each in a burst of {args.noop_tasks}")
        print(f"          chunk task pickled {len(blob) / 1024:.1f} KiB in {pickle_s * 1e3:.2f} ms")
        print(f"          per chunk ({len(records)} chunks): wall x workers / chunks {per_chunk_wall:.3f} s, "
              f"inside the task {statistics.mean(inside):.3f} s -> overhead "
              f"{per_chunk_wall - statistics.mean(inside):.3f} s "
              f"({(per_chunk_wall - statistics.mean(inside)) / per_chunk_wall * 100:.1f} %; includes workers "
              "idle at the end when chunks do not divide evenly)")
        gaps = []  # on one worker: end of a chunk's task to the end of the next, minus that task's time
        for pid in {r["pid"] for r in records}:
            mine = sorted((r for r in records if r["pid"] == pid), key=lambda r: r["finished"])
            gaps += [b["finished"] - a["finished"] - b["task_s"] for a, b in zip(mine, mine[1:])]
        if gaps:
            print(f"          between consecutive chunks on a worker (scheduling, transfer, reporting): "
                  f"median {statistics.median(gaps) * 1e3:.1f} ms over {len(gaps)} gaps")
        same = (folder / "local0.extxyz").read_bytes() == (folder / "cluster1.extxyz").read_bytes()
        print(f"output  : cluster bytes == local bytes: {same}"
              + ("" if same else " (expected when torch threads differ: SevenNet sums depend on them)"))
        print(f"report  : {result.report['cluster']}")
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
