"""What a U means for the default ensemble: its calibration on reference DFT data.

Reads a file scored by ``hetens score --reference`` (hetens_U, hetens_eps per
frame) and the reference file itself (its DFT forces, matched by
``config_index`` or by order), sorts the frames into structure classes by
geometry alone (the data carry no config type), and writes a small JSON
shipped in the package (``hetens/catalogue/presets/u_scale_default.json``, read by
:mod:`hetens.catalogue.u_scale`):

- ``k95``: the error bound at 95 % coverage, ``eps <= k95 * U`` on 95 % of
  the frames (eps = max_i |F_DFT[i] - F_ensemble[i]|, eV/Å);
- U's quantiles (10, 50, 90 %) per class, and per atom-count bin;
- how often each member is the most deviating one (a witness dominating U).

Classes (bcc-based, from the geometry): an atom is "bulk-like" when it has 14
neighbours within 1.2 a (a = the bcc lattice constant of the cell's volume
per atom: first and second shells). ``crystal_calm``: every atom bulk-like
and DFT max |F| < 0.5 eV/Å; ``crystal_hot``: every atom bulk-like, larger
forces (thermal or strained); ``defect``: 50-99.9 % bulk-like (vacancies,
surfaces, grain boundaries, dislocations, cracks); ``liquid``: fewer, 100+
atoms; ``other``: the rest (small disordered or vacuum cells, dimers).

The shipped figures came from all 929 frames of ../shared/data/w_dft_dev.extxyz.xz
(41 min of scoring on the 2-core machine)::

    hetens score w_dft_dev.extxyz -o scored.extxyz --reference w_dft_dev.extxyz
    python benchmarks/u_scale.py scored.extxyz w_dft_dev.extxyz -o hetens/catalogue/presets/u_scale_default.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

CLASSES = ("crystal_calm", "crystal_hot", "defect", "liquid", "other")
ATOM_BINS = (1, 5, 33, 65, 129, 100000)


def structure_class(atoms, dft_forces) -> str:
    """One of :data:`CLASSES` for a (bcc-metal) frame, from its geometry and DFT forces (eV/Å)."""
    from ase.neighborlist import neighbor_list

    n = len(atoms)
    lattice = (2.0 * atoms.get_volume() / n) ** (1.0 / 3.0)
    bulk_like = np.mean(np.bincount(neighbor_list("i", atoms, 1.2 * lattice), minlength=n) == 14)
    fmax = float(np.linalg.norm(dft_forces, axis=1).max())
    if bulk_like >= 0.999:
        return "crystal_calm" if fmax < 0.5 else "crystal_hot"
    if bulk_like >= 0.5:
        return "defect"
    return "liquid" if n >= 100 else "other"


def quantiles(values) -> dict | None:
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return None
    q10, q50, q90 = np.quantile(values, [0.1, 0.5, 0.9])
    return {"n": int(values.size), "p10": float(q10), "median": float(q50), "p90": float(q90)}


def calibrate(scored, reference) -> dict:
    """The JSON record (module docstring) of scored frames against their reference frames."""
    by_index = {a.info.get("config_index", k): a for k, a in enumerate(reference)}
    u, eps, natoms, classes, deviating, roles = [], [], [], [], [], {}
    for k, frame in enumerate(scored):
        ref = by_index[frame.info.get("config_index", k)]
        u.append(float(frame.info["hetens_U"]))
        eps.append(float(frame.info["hetens_eps"]))
        natoms.append(len(frame))
        classes.append(structure_class(ref, ref.get_forces()))
        deviating.append(str(frame.info["hetens_most_deviating"]))
        names = str(frame.info["hetens_members"]).split(",")
        roles = dict(zip(names, str(frame.info.get("hetens_roles", ",".join(["predictor"] * len(names)))).split(",")))
    u, eps, natoms = np.array(u), np.array(eps), np.array(natoms)
    ratio = eps / np.maximum(u, 1e-12)
    bins = {}
    for lo, hi in zip(ATOM_BINS[:-1], ATOM_BINS[1:]):
        mask = (natoms >= lo) & (natoms < hi)
        bins[f"{lo}-{hi - 1}" if hi < 100000 else f"{lo}+"] = quantiles(u[mask])
    counts = {name: deviating.count(name) for name in sorted(set(deviating))}
    return {
        "what": "U [eV/A] of the default ensemble on reference DFT frames (benchmarks/u_scale.py)",
        "data": "W DFT (PBE) frames of Liu et al. 2026's pool, ../shared/data/w_dft_dev.extxyz.xz",
        "members": list(roles), "roles": roles,
        "n_frames": int(u.size), "n_atoms": int(natoms.sum()),
        "k95": float(np.quantile(ratio, 0.95)),
        "k50": float(np.quantile(ratio, 0.5)),
        "U": quantiles(u),
        "eps": quantiles(eps),
        "by_class": {c: quantiles(u[np.array(classes) == c]) for c in CLASSES},
        "eps_by_class": {c: quantiles(eps[np.array(classes) == c]) for c in CLASSES},
        "by_atoms": bins,
        "most_deviating": counts,
        "witness_most_deviating_fraction": float(
            sum(v for k, v in counts.items() if roles.get(k) == "witness") / max(1, u.size)),
    }


def main() -> None:
    from ase.io import read

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scored", help="written by 'hetens score --reference'")
    parser.add_argument("reference", help="the reference frames (DFT forces)")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    record = calibrate(read(args.scored, ":"), read(args.reference, ":"))
    with open(args.output, "w") as handle:
        json.dump(record, handle, indent=1)
        handle.write("\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
