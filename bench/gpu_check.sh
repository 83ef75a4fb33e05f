#!/usr/bin/env bash
# One prepared command for the lent GPU machine (issue 12.6; docs/benchmarks.md), from the
# repository root there, with the wheels of bench/gpu_wheels.sh carried in .whl/:
#     bash bench/gpu_check.sh            # the GPU run, <= 8 minutes, $OUT/gpu_check.json
#     bash bench/gpu_check.sh --dry-run  # here, on CPU: tiny sizes, gloo, fp32 ZeRO-3 (about a minute)
# OUT defaults to ./gpu_check_out. Extra arguments go to bench/gpu_check.py (--parts train,loss).
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
args=()
dry=0
for a in "$@"; do
  case "$a" in
    --dry|--dry-run) dry=1 ;;
    *) args+=("$a") ;;
  esac
done
if [ "$dry" = 1 ]; then
  # Here: the venv's Python unless PYTHON is set, the project's own code.
  [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
  export PYTHONPATH="$PWD/workflow${PYTHONPATH:+:$PYTHONPATH}"
  exec "$PY" bench/gpu_check.py --dry --out "$OUT" "${args[@]}"
fi
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { echo "gpu_check: installing .whl/ failed" >&2; exit 1; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "gpu_check: no .whl/ (run bash bench/gpu_wheels.sh here first): DeepSpeed may be missing" >&2
fi
# The working tree's code first; DeepSpeed's JIT-built ops in a writable place.
export PYTHONPATH="$PWD/workflow${PYTHONPATH:+:$PYTHONPATH}"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-/tmp/torch_extensions}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/nvidia_smi.csv" 2>&1
# 8 minutes at most: the summary is rewritten after every part, so a stop keeps what finished.
timeout --signal=TERM --kill-after=20 470 "$PY" bench/gpu_check.py --out "$OUT" "${args[@]}" \
  2>&1 | tee "$OUT/gpu_check.log"
status=${PIPESTATUS[0]}
echo "gpu_check: exit $status; summary in $OUT/gpu_check.json"
exit "$status"
