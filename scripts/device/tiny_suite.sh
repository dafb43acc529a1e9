#!/usr/bin/env bash
# The tiny suite on the lent GPU with vLLM (issue 11, item 5): the real-format checkpoints built
# here, carried in .device-kit/tiny, served by vLLM's quantized kernels. Runs on the GPU machine,
# from the repo root, in the call that carries the kit's last part (see ../shared/device/README.md).
#
# Here, once:
#   PIP_FIND_LINKS="/opt/wheels /tmp/purewheels" \
#     bash ../shared/device/build-vllm-kit.sh .device-kit scripts/device/extra-requirements.txt
#   .venv/bin/python -c 'from quantgate.suites import load_suite; from quantgate.tiny import \
#     checkpoint_dir; print(checkpoint_dir(load_suite("tests/accuracy/suites/tiny.yaml"), "bf16", \
#     ".quantgate/cache"))'              # builds the tiny model; then copy its parent folder:
#   cp -r .quantgate/cache/tiny/<key> .device-kit/tiny
# Device calls, back to back on one warm machine:
#   1  carry part-aa, MANIFEST, vllm-env.sh:   bash .device-kit/vllm-env.sh stash
#   2  carry part-ab, MANIFEST, vllm-env.sh, .device-kit/tiny:
#        bash scripts/device/tiny_suite.sh bf16 fp8 nvfp4
#   3  carry .device-kit/vllm-env.sh, .device-kit/tiny:
#        bash scripts/device/tiny_suite.sh int4 int2 fp8_online
# Each call writes to $OUT: gate-<precisions>.txt (pytest's output), kernels.txt, and
# tiny-<precisions>.tar.gz (the report folder, server logs and the GPU's BF16 baselines).
# The BF16 baselines are taken on the GPU (a baseline must come from the serving stack it gates);
# compare them with the committed CPU ones afterwards:
#   python scripts/device/engines_side_by_side.py baselines <unpacked>/baselines --suite tiny
set -uo pipefail
out=${OUT:-/tmp/qg-tiny-out}
qg=/tmp/qg baselines=/tmp/qgb
mkdir -p "$out" "$qg/cache/tiny" "$baselines"
# shellcheck disable=SC1091
. .device-kit/vllm-env.sh activate || { echo "kit not active (exit $?): stash part-aa first" >&2; exit 3; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# the key the device computes (its torch/transformers versions differ from ours): the weights
# are the ones built here, so both engines serve the same bytes
key=$(python3 -c 'from quantgate.suites import load_suite
from quantgate.tiny import question_files
from quantgate.tiny.model import checkpoint_cache_key
print(checkpoint_cache_key(question_files(load_suite("tests/accuracy/suites/tiny.yaml"))))')
[ -d "$qg/cache/tiny/$key" ] || cp -r .device-kit/tiny "$qg/cache/tiny/$key" || exit 4
name=$(IFS=-; echo "$*")
run() { python3 -m pytest -m accuracy --suite tiny -p no:cacheprovider -rxs \
  "--baselines-dir=$baselines" "--quantgate-dir=$qg" "$@" 2>&1 | tee -a "$out/gate-$name.txt"; }
status=0
others=()
for p in "$@"; do
  if [ "$p" = bf16 ] && [ ! -f "$baselines/tiny/arith/bf16.json" ]; then
    run --precision bf16 --snapshot-update || status=1  # BF16 baselines from this GPU first
  else
    others+=(--precision "$p")
  fi
done
[ ${#others[@]} -gt 0 ] && { run "${others[@]}" || status=1; }
python3 scripts/device/engines_side_by_side.py --kernels "$qg/runs/tiny" | tee -a "$out/kernels.txt"
tar -czf "$out/tiny-$name.tar.gz" -C / "${qg#/}/reports" "${baselines#/}" \
  $(cd / && ls -d "${qg#/}"/runs/tiny/*/server-*.log 2>/dev/null)
exit "$status"
