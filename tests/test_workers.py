"""Members in worker processes (hetens.workers): separate environments, lifecycle, failures.

The first test builds a genuinely separate virtual environment with
``hetens env create`` (torch + chgnet only, hetens --no-deps; about 1.5-4
minutes on a 2-core box with a warm pip cache) and runs the shipped CHGNet
0.3.0 there inside an ensemble that also has an in-process SevenNet member.
Set ``HETENS_TEST_MEMBER_PYTHON`` to an existing chgnet environment's
interpreter to skip the build while developing.

Every test checks the process table afterwards: no worker may outlive it.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

import hetens
from hetens.core.evaluation import evaluate_member
from hetens.errors import (
    MemberDroppedWarning,
    MemberFailedError,
    MemberSpecError,
    MissingFamilyError,
    WorkerError,
    WorkerTimeoutError,
)
from hetens.core.group_evaluation import evaluate_alone
from hetens.workers.worker_main import TEST_HANG_VARIABLE

from conftest import tungsten_cell

WORKER_MODULE = "hetens.workers.worker_main"


# -- process table -----------------------------------------------------------------------


def worker_pids(parent: int | None = None) -> list[int]:
    """Live (non-zombie) hetens workers started by ``parent`` (default: this process)."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if WORKER_MODULE.encode() in cmdline and state != "Z" \
                and f"HETENS_WORKER_PARENT_PID={parent}".encode() in environ:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(condition, limit: float = 30.0) -> bool:
    """Poll ``condition`` until true or ``limit`` seconds passed (a bound, not a timing check)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(),
                                reason="checks the Linux process table")


@pytest.fixture(autouse=True)
def no_workers_left():
    yield
    gc.collect()
    assert worker_pids() == [], "a hetens worker process outlived its test"


# -- a separate environment -------------------------------------------------------------


@pytest.fixture(scope="session")
def member_python(family_environment):
    """Interpreter of a separate venv holding torch, chgnet and hetens (--no-deps), nothing else."""
    return family_environment("chgnet")


def test_member_environment_is_separate(member_python):
    probe = subprocess.run(
        [member_python, "-I", "-c",
         "import sys, importlib.util as u; print(sys.prefix); "
         "print(*[m for m in ('sevenn', 'mace', 'fairchem', 'matgl', 'chgnet', 'hetens') "
         "if u.find_spec(m)])"],
        capture_output=True, text=True, check=True,
    )
    prefix, modules = probe.stdout.splitlines()
    assert prefix != sys.prefix
    assert modules.split() == ["chgnet", "hetens"]


def test_isolated_member_in_other_environment_matches_in_process(member_python, chgnet_member,
                                                                  sevenn_member):
    """CHGNet in its own venv, beside in-process SevenNet: bit-identical to in-process CHGNet
    (both through its group path, as the ensemble evaluates it)."""
    structures = [tungsten_cell(2), tungsten_cell(1, seed=3), tungsten_cell(2, seed=5)]
    strained = structures[1]
    strained.set_cell(strained.cell * [1.02, 0.99, 1.0], scale_atoms=True)
    structures[2].numbers[::3] = 42  # some Mo: numbers change between calls too
    with hetens.HeterogeneousEnsembleCalculator(
        [f"chgnet:0.3.0@python={member_python}", sevenn_member], device="cpu"
    ) as calc:
        isolated = calc.members[0]
        assert isinstance(isolated.calculator, hetens.IsolatedCalculator)
        for atoms in structures:  # atom count, numbers and cell change from call to call
            atoms.calc = calc
            atoms.get_stress()
            energy, forces, stress = evaluate_alone(chgnet_member, atoms, True, force=True)
            assert calc.results["member_energies"][0] == energy
            assert np.array_equal(calc.results["member_forces"][0], forces)
            assert np.array_equal(calc.results["member_stresses"][0], stress)
        info = isolated.calculator.wait_ready()
        assert info["python"] == member_python
        assert isolated.versions["chgnet"] == "0.4.2"
        assert "sevenn" not in isolated.versions
        assert isolated.spec.endswith(f"@python={member_python}")
        pid = isolated.calculator.worker.pid
        assert alive(pid)
    assert not alive(pid)


def test_member_of_a_family_the_environment_lacks(member_python):
    member = hetens.load_member("sevenn:7net-0", device="cpu", python=member_python)
    with pytest.raises(MissingFamilyError, match="sevenn:7net-0.*while loading"):
        member.calculator.wait_ready()
    assert member.calculator.worker.pid is None


def test_environment_without_hetens_says_how_to_install_it(tmp_path, w16):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    python = str(tmp_path / "bare" / "bin" / "python")
    member = hetens.load_member("chgnet:0.3.0", device="cpu", python=python)
    with pytest.raises(WorkerError) as caught:
        member.calculator.get_potential_energy(w16)
    text = str(caught.value)
    assert "chgnet:0.3.0" in text and "exited with status 1" in text
    assert "No module named 'hetens'" in text
    assert f"{python} -m pip install --no-deps hetens==" in text


# -- in this environment ------------------------------------------------------------------


def test_parallel_ensemble_starts_workers_eagerly_and_closes_them(chgnet_member, w16):
    calc = hetens.HeterogeneousEnsembleCalculator(
        ["chgnet:0.3.0", "chgnet:0.2.0"], device="cpu", parallel=True, lazy=False
    )
    with calc:
        workers = [m.calculator.worker for m in calc.members]
        pids = [w.pid for w in workers]
        assert all(pid is not None and alive(pid) for pid in pids)
        assert sorted(worker_pids()) == sorted(pids)
        cores = len(os.sched_getaffinity(0))
        assert [w.threads for w in workers] == [max(1, cores // 2)] * 2
        assert [w.info["threads"] for w in workers] == [max(1, cores // 2)] * 2
        # Workers report their model's elements, so the element check covers them too.
        assert calc.members[0].supported_elements() == chgnet_member.supported_elements()
        w16.calc = calc
        forces = w16.get_forces()
        energy, member_forces, _ = evaluate_alone(chgnet_member, w16, False, force=True)
        assert calc.results["member_energies"][0] == energy
        assert np.array_equal(calc.results["member_forces"][0], member_forces)
        assert forces.shape == (16, 3)
        # Cached: no new calculation for the same structure.
        calc.get_forces(w16)
        assert [w.pid for w in workers] == pids
    assert not any(alive(pid) for pid in pids)


def test_model_error_keeps_the_worker(w16):
    member = hetens.load_member("chgnet:0.3.0", device="cpu", python=sys.executable)
    calc = member.calculator
    try:
        oganesson = Atoms(numbers=[118, 74], positions=[[0, 0, 0], [1.5, 1.5, 1.5]], cell=[3, 3, 3],
                          pbc=True)
        with pytest.raises(MemberFailedError, match=r"^member chgnet:0.3.0 failed on OgW: RuntimeError: "
                           r"mat1 and mat2 shapes cannot be multiplied .* \(in its worker\)$"):
            calc.get_potential_energy(oganesson)
        pid = calc.worker.pid
        assert np.isfinite(calc.get_potential_energy(w16))
        assert calc.worker.pid == pid
    finally:
        calc.close()
    assert calc.worker.pid is None


def test_killed_worker_names_member_and_stderr_then_restarts(chgnet_member, w16):
    member = hetens.load_member("chgnet:0.3.0", device="cpu", python=sys.executable,
                                env={TEST_HANG_VARIABLE: "60"}, timeout=300)
    calc = member.calculator
    try:
        calc.submit(w16, ["energy", "forces"])
        assert wait_until(lambda: any("sleeping" in line for line in calc.worker.stderr_tail()), 120)
        pid = calc.worker.pid
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerError) as caught:
            calc.collect()
        text = str(caught.value)
        assert f"member chgnet:0.3.0: its worker (pid {pid}" in text
        assert "killed by SIGKILL" in text
        assert f"{TEST_HANG_VARIABLE} is set: sleeping 60 s" in text
        assert not alive(pid)
        # The next use starts a new worker.
        del calc.worker.env[TEST_HANG_VARIABLE]
        energy, forces, _ = evaluate_member(member, w16, with_stress=False)
        assert calc.worker.pid != pid
        expected = evaluate_alone(chgnet_member, w16, False, force=True)
        assert energy == expected[0] and np.array_equal(forces, expected[1])
    finally:
        calc.close()


@pytest.mark.timeout(300)
def test_hanging_worker_times_out_and_is_stopped(w16):
    member = hetens.load_member("chgnet:0.3.0@timeout=2", device="cpu", python=sys.executable,
                                env={TEST_HANG_VARIABLE: "600"})
    calc = member.calculator
    assert calc.worker.timeout == 2.0
    calc.wait_ready()
    pid = calc.worker.pid
    with pytest.raises(WorkerTimeoutError) as caught:
        calc.get_potential_energy(w16)
    text = str(caught.value)
    assert "member chgnet:0.3.0" in text and "did not answer within 2 s during a calculation" in text
    assert f"{TEST_HANG_VARIABLE} is set: sleeping 600 s" in text
    assert not alive(pid)
    assert calc.worker.pid is None


def test_hung_worker_is_dropped_and_the_others_carry_on(sevenn_member, chgnet_member, w16):
    hung = hetens.load_member("chgnet:0.2.0@timeout=2", device="cpu", python=sys.executable,
                              env={TEST_HANG_VARIABLE: "600"})
    with hetens.HeterogeneousEnsembleCalculator(
        [sevenn_member, hung, chgnet_member], on_member_error="drop", lazy=False
    ) as calc:
        pid = hung.calculator.worker.pid
        with pytest.warns(MemberDroppedWarning, match="chgnet:0.2.0 dropped: .*did not answer within 2 s"):
            calc.get_potential_energy(w16)
        assert list(calc.results["dropped_members"]) == ["chgnet:0.2.0"]
        assert calc.results["member_weights"] == pytest.approx([0.5, 0.0, 0.5])
        assert np.isfinite(calc.results["energy"]) and not alive(pid)


def test_garbage_collection_and_context_manager_stop_workers():
    member = hetens.load_member("chgnet:0.3.0", python=sys.executable, lazy=False)
    pid = member.calculator.worker.pid
    assert alive(pid)  # launched at construction, still loading
    del member
    gc.collect()
    assert not alive(pid)
    with hetens.IsolatedCalculator("chgnet:0.3.0", lazy=False) as calc:
        pid = calc.worker.pid
        assert alive(pid)
    assert not alive(pid)


_OWNER_SCRIPT = """
import os, signal, sys, time
from ase.build import bulk
import hetens
member = hetens.load_member("chgnet:0.3.0", device="cpu", python=sys.executable,
                            env={"%s": "600"})
calc = member.calculator
calc.wait_ready()
mode = sys.argv[1]
if mode != "exit":
    calc.submit(bulk("W", "bcc", a=3.17), ["energy", "forces"])  # the worker now sleeps
print(calc.worker.pid, flush=True)
if mode == "sigkill":
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGKILL)
if mode == "interrupt":
    calc.collect()  # waits until Ctrl-C
""" % TEST_HANG_VARIABLE


@pytest.mark.parametrize("mode", ["exit", "sigkill", "interrupt"])
def test_workers_die_with_their_owner(tmp_path, mode):
    """Normal exit without close(), SIGKILL of the owner, Ctrl-C during a call: no orphan.

    In the last two the worker is busy (sleeping in a calculation), so only the
    parent-death signal or the owner's own cleanup can stop it.
    """
    script = tmp_path / "owner.py"
    script.write_text(textwrap.dedent(_OWNER_SCRIPT))
    # SIGINT as at a terminal, even when the tests run with it ignored (a background job).
    with subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) as owner:
        try:
            pid = int(owner.stdout.readline())  # of a worker that was ready
            if mode == "interrupt":
                owner.send_signal(signal.SIGINT)
            owner.wait(120)
            assert wait_until(lambda: not alive(pid), 30), f"worker {pid} outlived its owner ({mode})"
            if mode == "interrupt":
                assert "KeyboardInterrupt" in owner.stderr.read()
        finally:
            if owner.poll() is None:
                owner.kill()


# -- specs, options, protocol -----------------------------------------------------------


def test_worker_options_in_specs_are_checked():
    with pytest.raises(MemberSpecError, match="threads='0' must be a positive integer"):
        hetens.load_member("chgnet:0.3.0@python=python3@threads=0")
    with pytest.raises(MemberSpecError, match="lazy='maybe' must be true or false"):
        hetens.load_member("chgnet:0.3.0@lazy=maybe")
    with pytest.raises(WorkerError, match="interpreter '/no/such/python' does not exist"):
        hetens.load_member("chgnet:0.3.0@python=/no/such/python")
    member = hetens.load_member(f"chgnet:0.3.0@python={sys.executable}@threads=1@timeout=none@name=c3")
    worker = member.calculator.worker
    assert (member.name, worker.threads, worker.timeout, worker.spec) == ("c3", 1, None, "chgnet:0.3.0")
    assert member.level_of_theory == "PBE+U" and member.device == "auto"
    assert not worker.started


def test_protocol_round_trip_is_exact():
    from hetens.workers.protocol import PREFIX_SIZE, decode_body, decode_prefix, encode

    rng = np.random.default_rng(0)
    arrays = {
        "scalar": np.asarray(rng.normal()),
        "forces": rng.normal(size=(7, 3)),
        "float32": rng.normal(size=(4,)).astype(np.float32),
        "empty": np.zeros((0, 3)),
        "numbers": np.array([74, 42, 1]),
        "pbc": np.array([True, False, True]),
        "strided": rng.normal(size=(6, 6))[::2, 1::2],
    }
    frame = encode("result", {"seconds": 0.5, "nested": {"a": [1, 2]}}, arrays)
    header_length, body_length = decode_prefix(frame[:PREFIX_SIZE])
    message = decode_body(frame[PREFIX_SIZE:PREFIX_SIZE + header_length],
                          bytearray(frame[PREFIX_SIZE + header_length:]))
    assert len(frame) == PREFIX_SIZE + header_length + body_length
    assert message.kind == "result" and message.fields == {"seconds": 0.5, "nested": {"a": [1, 2]}}
    for name, array in arrays.items():
        got = message.arrays[name]
        assert got.dtype == array.dtype and got.shape == array.shape
        assert got.tobytes() == array.tobytes(), name
    assert message.arrays["forces"].flags.writeable
    with pytest.raises(TypeError, match="'bad' has dtype object"):
        encode("x", arrays={"bad": np.array([object()])})


def test_structure_payload_round_trip():
    from hetens.workers.protocol import atoms_from_payload, atoms_payload

    atoms = tungsten_cell(1)
    atoms.pbc = [True, True, False]
    atoms.set_initial_magnetic_moments([1.0, -1.0])
    atoms.set_tags([3, 4])
    atoms.info.update(charge=np.int64(1), spin=2, label="x", hetens_U=0.3, unpicklable=object())
    fields, arrays = atoms_payload(atoms)
    copy = atoms_from_payload(fields, arrays)
    assert copy.positions.tobytes() == atoms.positions.tobytes()
    assert copy.cell.array.tobytes() == atoms.cell.array.tobytes()
    assert copy.pbc.tolist() == [True, True, False]
    assert copy.get_initial_magnetic_moments().tolist() == [1.0, -1.0]
    assert copy.get_tags().tolist() == [3, 4]
    assert fields["info"] == {"charge": 1, "spin": 2, "label": "x"}
