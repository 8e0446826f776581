"""The models hetens knows by name, with their level of theory and training data.

This is data, not loading code: each family's adapter in
:mod:`hetens.families` does the loading. Level-of-theory labels:

- ``PBE+U``: the Materials Project mix of PBE and PBE+U (MPtrj, OMat24,
  Alexandria); energies are mutually compatible;
- ``PBE``: plain PBE without +U (MatPES-PBE);
- ``r2SCAN``: r2SCAN meta-GGA (MP r2SCAN, MatPES-r2SCAN);
- ``wB97M-V``, ``RPBE``, ``PBE-D3``: the other UMA tasks (molecules, catalysis, MOFs);
- ``unknown``: a local file or a plain calculator without a declared level.

Energies of different levels (PBE+U vs r2SCAN differ by ~40 eV per W atom
here) must never be averaged; :class:`hetens.HeterogeneousEnsembleCalculator`
refuses unless asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hetens.errors import UnknownModelError

__all__ = ["KnownModel", "KNOWN_MODELS", "find_model", "models_of_family"]


@dataclass(frozen=True)
class KnownModel:
    """One pretrained model.

    Attributes:
        family: adapter family (``sevenn``, ``chgnet``, ``mace``, ``fairchem``, ``matgl``, ``diep``, ``nequip``...).
        name: the name the family's own loader takes.
        level_of_theory: label of the DFT reference (see module docstring), for
            single-head models.
        training_data: the data set(s) it was trained on.
        source: ``"wheel"`` when the weights ship inside the package wheel
            (works offline), ``"hub"`` when they are downloaded at first use.
        heads: head/task name -> level of theory, for multi-head models.
        default_head: the head used when the spec names none.
    """

    family: str
    name: str
    level_of_theory: str
    training_data: str
    source: str = "hub"
    heads: dict[str, str] = field(default_factory=dict)
    default_head: str | None = None

    def level_for(self, head: str | None) -> str:
        """Level of theory of ``head`` (or of the model when it has no heads)."""
        if not self.heads:
            return self.level_of_theory
        chosen = head or self.default_head
        if chosen is None:
            raise UnknownModelError(
                f"{self.family}:{self.name} has several heads; choose one with "
                f"@HEAD, one of {sorted(self.heads)}"
            )
        for key, level in self.heads.items():
            if key.lower() == chosen.lower():
                return level
        raise UnknownModelError(
            f"{self.family}:{self.name} has no head {chosen!r}; choose one of {sorted(self.heads)}"
        )

    @property
    def spec(self) -> str:
        return f"{self.family}:{self.name}"


_UMA_TASKS = {"omat": "PBE+U", "omol": "wB97M-V", "oc20": "RPBE", "odac": "PBE-D3", "omc": "PBE-D3"}

KNOWN_MODELS: tuple[KnownModel, ...] = (
    # SevenNet: weights inside the sevenn wheel for these four.
    KnownModel("sevenn", "7net-0", "PBE+U", "MPtrj", source="wheel"),
    KnownModel("sevenn", "7net-0_22may2024", "PBE+U", "MPtrj", source="wheel"),
    KnownModel("sevenn", "7net-l3i5", "PBE+U", "MPtrj", source="wheel"),
    KnownModel(
        "sevenn", "7net-mf-0", "PBE+U", "MPtrj + MP r2SCAN", source="wheel",
        heads={"PBE": "PBE+U", "R2SCAN": "r2SCAN"}, default_head="PBE",
    ),
    KnownModel("sevenn", "7net-omat", "PBE+U", "OMat24"),
    KnownModel(
        "sevenn", "7net-mf-ompa", "PBE+U", "MPtrj + sAlex + OMat24",
        heads={"mpa": "PBE+U", "omat24": "PBE+U"}, default_head="mpa",
    ),
    # CHGNet: all three inside the chgnet wheel.
    KnownModel("chgnet", "0.3.0", "PBE+U", "MPtrj", source="wheel"),
    KnownModel("chgnet", "0.2.0", "PBE+U", "MPtrj", source="wheel"),
    KnownModel("chgnet", "r2scan", "r2SCAN", "MP r2SCAN", source="wheel"),
    # MACE foundation models (downloaded by mace_mp).
    KnownModel("mace", "small", "PBE+U", "MPtrj (MACE-MP-0)"),
    KnownModel("mace", "medium", "PBE+U", "MPtrj (MACE-MP-0)"),
    KnownModel("mace", "large", "PBE+U", "MPtrj (MACE-MP-0)"),
    KnownModel("mace", "medium-mpa-0", "PBE+U", "MPtrj + sAlex (MACE-MPA-0)"),
    KnownModel("mace", "medium-0b3", "PBE+U", "MPtrj (MACE-MP-0b3)"),
    KnownModel("mace", "small-omat-0", "PBE+U", "OMat24 (MACE-OMAT-0)"),
    KnownModel("mace", "medium-omat-0", "PBE+U", "OMat24 (MACE-OMAT-0)"),
    KnownModel("mace", "mace-matpes-pbe-0", "PBE", "MatPES-PBE"),
    KnownModel("mace", "mace-matpes-r2scan-0", "r2SCAN", "MatPES-r2SCAN"),
    # fairchem: UMA (multi-task) and eSEN (gated on the Hugging Face hub).
    KnownModel("fairchem", "uma-s-1p1", "PBE+U", "OMat24, OMol25, OC20, ODAC23, OMC25",
               heads=_UMA_TASKS, default_head="omat"),
    KnownModel("fairchem", "uma-m-1p1", "PBE+U", "OMat24, OMol25, OC20, ODAC23, OMC25",
               heads=_UMA_TASKS, default_head="omat"),
    # The paper's eSEN-30M-OAM/OMAT and eqV2 checkpoints are fairchem-core 1.x files:
    # not in fairchem 2.x's pretrained list, and its load_predict_unit does not read them.
    # matgl (M3GNet / TensorNet / CHGNet on MatPES, and the MP-2021 M3GNet).
    KnownModel("matgl", "M3GNet-MatPES-PBE-v2025.1-PES", "PBE", "MatPES-PBE"),
    KnownModel("matgl", "TensorNet-MatPES-PBE-v2025.1-PES", "PBE", "MatPES-PBE"),
    KnownModel("matgl", "TensorNet-MatPES-r2SCAN-v2025.1-PES", "r2SCAN", "MatPES-r2SCAN"),
    KnownModel("matgl", "M3GNet-MP-2021.2.8-PES", "PBE+U", "MPF 2021"),
    # DIEP: diep_fold1 ships inside the diep wheel (diep/pretrained_models/).
    KnownModel("diep", "diep_fold1", "r2SCAN", "MatPES-r2SCAN", source="wheel"),
    # NequIP / Allegro foundation models on nequip.net (own environment, family "nequip"):
    # NAME-VERSION is the model nequip.net:mir-group/NAME:VERSION (nequip-package files,
    # version 0.1 released 2025-08-28). OAM: pre-trained on OMat24, fine-tuned on sAlex + MPtrj
    # (PBE/PBE+U, MP-compatible); MP: MPtrj only (matbench-discovery compliant).
    KnownModel("nequip", "NequIP-OAM-L-0.1", "PBE+U", "OMat24 + sAlex + MPtrj"),
    KnownModel("nequip", "Allegro-OAM-L-0.1", "PBE+U", "OMat24 + sAlex + MPtrj"),
    KnownModel("nequip", "NequIP-MP-L-0.1", "PBE+U", "MPtrj"),
    KnownModel("nequip", "Allegro-MP-L-0.1", "PBE+U", "MPtrj"),
    # GRACE (tensorpotential foundation models, own environment, family "grace"): the names
    # grace_fm takes; downloaded from the Hugging Face hub into ~/.cache/grace. OAM: fitted
    # on OMat24, fine-tuned on sAlex + MPtrj; OMAT: OMat24 only (both PBE/PBE+U, MP-compatible).
    # The paper's pool has GRACE-2L-OMAT and GRACE-2L-OAM. tensorpotential 0.6 has no
    # MPtrj-only ("-MP") models any more: its list has OAM, OMAT and SMAX variants.
    KnownModel("grace", "GRACE-1L-OAM", "PBE+U", "OMat24 + sAlex + MPtrj"),
    KnownModel("grace", "GRACE-2L-OAM", "PBE+U", "OMat24 + sAlex + MPtrj"),
    KnownModel("grace", "GRACE-FS-OAM", "PBE+U", "OMat24 + sAlex + MPtrj"),
    KnownModel("grace", "GRACE-1L-OMAT", "PBE+U", "OMat24"),
    KnownModel("grace", "GRACE-2L-OMAT", "PBE+U", "OMat24"),
    KnownModel("grace", "GRACE-FS-OMAT", "PBE+U", "OMat24"),
    # DeePMD (deepmd-kit 3.2 pretrained list, own environment, family "deepmd"): downloaded
    # by deepmd into ~/.cache/deepmd/pretrained/models. DPA-3.1-3M is a multi-task (OpenLAM)
    # model: the head is required and decides the level; the two PBE+U heads below are the
    # OMat24 and MPtrj branches (names as published; not checkable offline here, and deepmd
    # refuses an unknown head at load). The paper's "DPA3 v1/v2" pool members are
    # DPA-3.1-3M heads or fine-tunes of it, given as local files.
    KnownModel("deepmd", "DPA-3.1-3M", "PBE+U", "OpenLAM multi-task (OMat24, MPtrj, Alexandria, ...)",
               heads={"Omat24": "PBE+U", "MP_traj_v024_alldata_mixu": "PBE+U"}),
    KnownModel("deepmd", "DPA3-Omol-Large", "wB97M-V", "OMol25"),
)


def models_of_family(family: str) -> list[KnownModel]:
    """Known models of one family, in registry order."""
    return [m for m in KNOWN_MODELS if m.family == family]


def find_model(family: str, name: str) -> KnownModel | None:
    """The registry entry for ``family:name`` (case-insensitive), or ``None`` (e.g. a path)."""
    for model in KNOWN_MODELS:
        if model.family == family and model.name.lower() == name.lower():
            return model
    return None
