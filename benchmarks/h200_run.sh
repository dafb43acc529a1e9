#!/usr/bin/env bash
# One device call on the lent H200: activate the vLLM kit, then run one throughput plan of
# benchmarks/h200_bench.py (its docstring lists them: invariant-clients, fp8-online, ...)
# within the call's 10 minutes; any Hopper GPU runs them (the 32B plans just fit an H100).
#
#   bash benchmarks/h200_run.sh harness            # from the repo root, on the GPU machine
#   PARSER_CHECK=1 bash benchmarks/h200_run.sh invariant-clients  # vLLM's parser first
#
# Needs (carried in the call, see docs/performance.md): .device-kit/vllm-env.sh, the kit's last
# part and MANIFEST.sha256 (the first part stashed by an earlier call of this warm machine), and
# .device-kit/models/ (python benchmarks/make_dummy_models.py). Writes to $OUT: <plan>.json,
# <plan>.md, <plan>-servers.txt, <plan>-log.txt (and parser-check.txt with PARSER_CHECK=1).
set -uo pipefail
plan=${1:?usage: bash benchmarks/h200_run.sh PLAN (see benchmarks/h200_bench.py --help)}
limit=${CALL_LIMIT_S:-600}  # the device call's limit; the plan gets what is left, minus a margin
out=${OUT:-/tmp/qg-bench-out}
mkdir -p "$out"
# shellcheck disable=SC1091
. .device-kit/vllm-env.sh activate || { echo "kit not active (exit $?): stash part-aa first" >&2; exit 3; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ ! -f .device-kit/models/qwen3-32b-dummy/config.json ]; then
  echo "no .device-kit/models: run python benchmarks/make_dummy_models.py here and carry it" >&2
  exit 4
fi
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader
if [ "${PARSER_CHECK:-0}" = 1 ]; then
  python3 -m pytest tests/serving/test_vllm_command.py -q -p no:cacheprovider -rs \
    > "$out/parser-check.txt" 2>&1
  tail -3 "$out/parser-check.txt"
fi
budget=$((limit - SECONDS - 25))
echo "plan $plan: ${budget}s left for it"
python3 benchmarks/h200_bench.py --plan "$plan" --models .device-kit/models --out "$out" \
  --budget-s "$budget" 2>&1 | tee "$out/$plan-log.txt"
exit "${PIPESTATUS[0]}"
