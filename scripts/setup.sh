#!/usr/bin/env bash
# Create .venv and install quantgate with the CPU serving extra. Idempotent: re-running is quick.
#   bash scripts/setup.sh            (from the repository root)
# torch is pinned to 2.13.0 first: on our machines that is a CPU build on disk; any other version
# (or an unpinned one) pulls several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$py" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==2.13.0" > "$constraints"
.venv/bin/python -c 'import torch' 2>/dev/null || "${pip[@]}" torch==2.13.0
"${pip[@]}" -c "$constraints" -e ".[cpu,dev]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c 'import quantgate, torch; print("quantgate ready: torch", torch.__version__)'
