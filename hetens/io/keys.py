"""Every ``hetens_*`` name hetens writes into frames and files, defined once.

ASE keeps only the results it knows when a frame is written, so hetens'
own quantities go into ``atoms.info`` / ``atoms.arrays`` under
:data:`PREFIX`, which no ASE name uses. What each key holds is documented
where it is written: :mod:`hetens.core.frames` (the ensemble's results),
:mod:`hetens.rescore.output` (scoring), :mod:`hetens.rescore.select`
(labels), :mod:`hetens.monitor.observation` (MD and relaxation frames).
This module imports nothing, so every process (worker environments
included) can use it.
"""

from __future__ import annotations

#: The prefix of every key hetens adds to a frame's ``info`` or ``arrays``.
PREFIX = "hetens_"

# ------------------------------------------------ the ensemble (hetens.core.frames)
U_KEY = PREFIX + "U"  #: info: U, eV/Å
MAX_U_KEY = PREFIX + "max_u"  #: info: largest per-atom u, eV/Å
ENERGY_STD_KEY = PREFIX + "energy_std"  #: info: weighted member energy spread, eV/atom
MEMBER_ENERGIES_KEY = PREFIX + "member_energies"  #: info: (M,) member energies, eV
MOST_DEVIATING_KEY = PREFIX + "most_deviating"  #: info: member contributing most to U
MEMBERS_KEY = PREFIX + "members"  #: info: member names joined by ","
WEIGHTS_KEY = PREFIX + "weights"  #: info: (M,) normalised U weights
VERSION_KEY = PREFIX + "version"  #: info (and JSON records): hetens version that wrote it
DROPPED_KEY = PREFIX + "dropped"  #: info: members left out of the frame, joined by ","
ROLES_KEY = PREFIX + "roles"  #: info: member roles joined by "," (with witnesses)
PREDICTOR_WEIGHTS_KEY = PREFIX + "predictor_weights"  #: info: (M,) predictor weights (with witnesses)
ATOMIC_U_KEY = PREFIX + "u"  #: arrays: (N,) per-atom u, eV/Å

# ------------------------------------------------------ scoring (hetens score)
SOURCE_KEY = PREFIX + "source"  #: info: ``FILE:INDEX`` the frame was read from
EPS_KEY = PREFIX + "eps"  #: info: ``max_i |F_ref - F|``, eV/Å
MEMBER_FORCES_KEY = PREFIX + "member_forces"  #: arrays: (N, 3M) member forces, eV/Å
MEMBER_STRESSES_KEY = PREFIX + "member_stresses"  #: info: (6M,) member stresses, eV/Å³

# ------------------------------------------------------ selection (hetens select)
LABEL_SOURCE_KEY = PREFIX + "label_source"  #: info: "ensemble", a member's name, or "dft"
ANCHOR_KEY = PREFIX + "anchor"  #: info: True on a calm frame queued for DFT to fit the energy reference

# ------------------------------------------------------------ MD and relaxation
STEP_KEY = PREFIX + "step"  #: info: step number of the frame
TIME_FS_KEY = PREFIX + "time_fs"  #: info: simulated time, fs
DRIVER_KEY = PREFIX + "driver"  #: info: the member (or "predictors") that drove a checked-driver run
CHECKED_KEY = PREFIX + "checked"  #: info: False on a frame between a driver's checks (it has no U)

# ------------------------------------------------------------ exploration (hetens explore)
RUN_KEY = PREFIX + "run"  #: info: the campaign run a candidate comes from
CONDITION_KEY = PREFIX + "condition"  #: info: that run's condition, e.g. "T=600K P=0GPa seed=0"

__all__ = [name for name in dict(globals()) if name.isupper()]
