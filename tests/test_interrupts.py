"""Ctrl-C during ``hetens md`` and ``hetens score``: clean stop, nothing lost, no worker left.

The CLI runs in its own process (real SIGINT, real shipped models); the
tests wait until it has written a few rows or frames, interrupt it, and
check the exit code (130), the message saying where it stopped, that every
row and frame written is complete and readable, and that no worker
process of it is alive afterwards. The worker variants run members with
``--parallel`` (each in a worker process) and first check the workers
exist, so "none left" means something. Also here: the observers fsync
their files on close, and ``score_live`` raising
:class:`~hetens.errors.Interrupted` in-process.
"""

from __future__ import annotations

import dataclasses

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from ase.io import read, write
from ase.md.verlet import VelocityVerlet

from hetens import HeterogeneousEnsembleCalculator
from hetens.errors import Interrupted
from hetens.monitor import UncertaintyMonitor, read_log, run_monitored

from conftest import tungsten_cell

W16 = str(Path(__file__).resolve().parents[1] / "examples" / "data" / "W_bcc_16.extxyz")
WORKER_MODULE = "hetens.workers.worker_main"
STEPS = 100000  # never reached: the run is interrupted


def worker_processes(parent: int) -> list[psutil.Process]:
    """Live hetens workers started by process ``parent`` (found by their environment)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if WORKER_MODULE not in " ".join(proc.info["cmdline"] or ()) or proc.info["status"] == "zombie":
                continue
            if proc.environ().get("HETENS_WORKER_PARENT_PID") == str(parent):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_for(condition, limit: float, what: str, proc: subprocess.Popen) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if condition():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (exit {proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no {what} within {limit} s")


def default_sigint() -> None:
    """In the child: Ctrl-C as at a terminal, even when this test runs with SIGINT ignored
    (a shell starts background jobs that way, and children inherit it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def hetens(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hetens.cli.main", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint,
    )


def interrupt(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise


def rows_in(log: Path) -> int:
    try:
        return max(len(log.read_text().splitlines()) - 1, 0)
    except OSError:
        return 0


# ----------------------------------------------------------------------------- hetens md


@pytest.mark.parametrize(
    "members",
    [
        pytest.param(["sevenn:7net-0", "chgnet:0.3.0"], id="in-process"),
        pytest.param(["sevenn:7net-0", "chgnet:0.3.0", "--parallel"], id="workers"),
    ],
)
def test_md_ctrl_c_keeps_every_row_and_frame(members, tmp_path):
    log, traj = tmp_path / "run.csv", tmp_path / "run.extxyz"
    proc = hetens("md", W16, "--models", *members, "--device", "cpu", "--steps", str(STEPS),
                  "--log", str(log), "--traj", str(traj), "--traj-interval", "1", "--print-every", "1")
    wait_for(lambda: rows_in(log) >= 3, 600, "3 logged steps", proc)
    workers = worker_processes(proc.pid)
    if "--parallel" in members:
        assert len(workers) == 2, "the members should run in worker processes"
    out, err = interrupt(proc)

    assert proc.returncode == 130, err
    assert "Traceback" not in err
    rows = read_log(log)  # every row complete and parseable
    n = len(rows["step"])
    assert n >= 3 and rows["step"].tolist() == list(range(n))
    frames = read(traj, ":")
    assert [f.info["hetens_step"] for f in frames] == rows["step"].tolist()
    assert all(f.get_forces().shape == (16, 3) for f in frames)
    message = (f"hetens md: interrupted at step {n - 1} of {STEPS}; log {log} has {n} rows, "
               f"trajectory {traj} has {n} frames")
    assert message in err.splitlines(), err
    assert (tmp_path / "run.png").exists()
    psutil.wait_procs(workers, timeout=30)
    assert worker_processes(proc.pid) == []


# -------------------------------------------------------------------------- hetens score


@pytest.fixture(scope="module")
def many_frames(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("frames") / "many.extxyz"
    write(path, [tungsten_cell(2, seed=k) for k in range(400)])
    return path


def frames_in(folder: Path, pattern: str) -> int:
    return sum(p.read_text().count("hetens_U=") for p in folder.glob(pattern))


def test_score_ctrl_c_keeps_scored_frames_and_stops_workers(many_frames, tmp_path):
    out = tmp_path / "scored.extxyz"
    proc = hetens("score", str(many_frames), "-o", str(out), "--models", "sevenn:7net-0", "chgnet:0.3.0",
                  "--parallel", "--device", "cpu", "--batch-size", "2", "--progress", "off")
    wait_for(lambda: frames_in(tmp_path, ".scored.extxyz.*.tmp") >= 4, 600, "4 scored frames", proc)
    workers = worker_processes(proc.pid)
    assert len(workers) == 2, "the members should run in worker processes"
    _, err = interrupt(proc)

    assert proc.returncode == 130, err
    assert "Traceback" not in err
    match = re.fullmatch(
        r"hetens score: interrupted at frame (\d+) of 400 \(.*many\.extxyz frame (\d+)\); "
        r"(\d+) scored frames kept in (.*)", err.strip())
    assert match, err
    done, at, kept, partial = int(match[1]), int(match[2]), int(match[3]), Path(match[4])
    assert done == kept >= 4 and at >= done - 1
    assert partial == tmp_path / "scored.partial.extxyz"
    assert not out.exists()  # the complete output appears only when complete
    assert list(tmp_path.glob(".*.tmp")) == []
    frames = read(partial, ":")  # complete frames only
    assert len(frames) == done
    assert [f.info["hetens_source"] for f in frames] == [f"{many_frames}:{k}" for k in range(done)]
    assert all("hetens_U" in f.info and f.get_forces().shape == (16, 3) for f in frames)
    psutil.wait_procs(workers, timeout=30)
    assert worker_processes(proc.pid) == []


def test_score_live_raises_interrupted_after_keeping_frames(sevenn_member, many_frames, tmp_path):
    """In-process: a real SIGINT once two frames are written; ``Interrupted`` says what was kept."""
    from hetens.jobs.score_live import score_live

    calc = HeterogeneousEnsembleCalculator([sevenn_member, dataclasses.replace(sevenn_member, name="copy")])
    out = tmp_path / "scored.extxyz"
    stop = threading.Event()

    def press_ctrl_c() -> None:
        while not stop.is_set():
            if frames_in(tmp_path, ".scored.extxyz.*.tmp") >= 2:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=press_ctrl_c, daemon=True)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # even if launched ignoring it
    watcher.start()
    try:
        with pytest.raises(Interrupted) as caught:
            score_live(many_frames, out, calc, batch_size=1, progress="off")
    finally:
        stop.set()
        watcher.join()
        signal.signal(signal.SIGINT, previous)
    exc = caught.value
    assert isinstance(exc, KeyboardInterrupt) and exc.total == 400 and exc.done >= 2
    assert exc.kept == tmp_path / "scored.partial.extxyz"
    assert str(exc).startswith(f"interrupted at frame {exc.done} of 400")
    assert len(read(exc.kept, ":")) == exc.done
    assert not out.exists() and list(tmp_path.glob(".*.tmp")) == []


# ---------------------------------------------------------------- observers fsync on close


def test_observers_flush_and_fsync_their_files_on_close(sevenn_member, chgnet_member, tmp_path, monkeypatch):
    atoms = tungsten_cell(2)
    atoms.calc = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])  # U > 0: frames flagged
    dyn = VelocityVerlet(atoms, timestep=1.0)
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    with UncertaintyMonitor(dyn, log=tmp_path / "u.csv", flag_above=1e-9, flagged=tmp_path / "f.extxyz",
                            trajectory=tmp_path / "t.extxyz") as monitor:
        run_monitored(dyn, 2, monitor)
        monkeypatch.setattr(os, "fsync", spy)
    monkeypatch.undo()
    assert sorted(Path(p).name for p in synced) == ["f.extxyz", "t.extxyz", "u.csv"]
    assert len(read_log(tmp_path / "u.csv")["step"]) == 3
    assert len(read(tmp_path / "t.extxyz", ":")) == len(read(tmp_path / "f.extxyz", ":")) == 3


# ------------------------------------------------- graceful Ctrl-C in the library (stop_on_interrupt)


def ctrl_c_at(step: int):
    """A progress callback that sends this process a real SIGINT once ``step`` steps are done."""

    def progress(done: int, *_) -> None:
        if done == step:
            os.kill(os.getpid(), signal.SIGINT)

    return progress


@pytest.fixture
def default_int_handler():
    """Python's own SIGINT handler, even when the tests run with SIGINT ignored; restored after."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_run_monitored_stops_after_the_step_on_ctrl_c(sevenn_member, chgnet_member, tmp_path, default_int_handler):
    atoms = tungsten_cell(1)
    atoms.calc = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])
    dyn = VelocityVerlet(atoms, timestep=1.0)
    with UncertaintyMonitor(dyn, log=tmp_path / "u.csv", trajectory=tmp_path / "t.extxyz") as monitor:
        outcome = run_monitored(dyn, 50, monitor, progress=ctrl_c_at(3), stop_on_interrupt=True)
    assert outcome.status == "interrupted" and outcome.interrupted and not outcome.completed
    assert outcome.steps_done == 3 and outcome.observed == 4  # steps 0..3, each fully recorded
    assert read_log(tmp_path / "u.csv")["step"].tolist() == [0, 1, 2, 3]
    assert [f.info["hetens_step"] for f in read(tmp_path / "t.extxyz", ":")] == [0, 1, 2, 3]
    assert "interrupted (Ctrl-C)" in outcome.summary() and outcome.as_dict()["status"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler given back
    # without the flag, Ctrl-C is Python's KeyboardInterrupt, as before
    with pytest.raises(KeyboardInterrupt):
        run_monitored(VelocityVerlet(atoms, timestep=1.0), 50, progress=ctrl_c_at(2))


def test_run_relaxation_stops_after_the_step_on_ctrl_c(sevenn_member, chgnet_member, tmp_path, default_int_handler):
    from hetens.monitor import run_relaxation

    atoms = tungsten_cell(1, rattle=0.1, seed=7)
    atoms.calc = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])
    relaxation = run_relaxation(atoms, fmax=1e-9, steps=100, log=tmp_path / "r.csv", progress=ctrl_c_at(2),
                                stop_on_interrupt=True)
    outcome = relaxation.outcome
    assert outcome.interrupted and outcome.steps_done == 2 and outcome.converged is None
    assert read_log(tmp_path / "r.csv")["step"].tolist() == [0, 1, 2]
    assert relaxation.frame.info["hetens_converged"] is False and relaxation.frame.info["hetens_steps"] == 2
