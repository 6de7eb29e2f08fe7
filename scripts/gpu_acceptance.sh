#!/usr/bin/env bash
# The GPU acceptance of issue 27 in one command, on a fresh Linux machine with one NVIDIA GPU, a CUDA
# toolkit, CMake, PyTorch with CUDA and Lightning, and no package registry:
#
#   bash scripts/gpu_acceptance.sh [OUT_DIR] [--wheels DIR] [--budget SECONDS] [--dry] [--no-build]
#                                  [options of `exodus-lightning gpu-acceptance`, e.g. --fit-steps 300]
#
#  1. wheels: the pure-Python packages the machine lacks (scripts/gpu_wheels.sh makes the folder;
#     --wheels DIR or $EXODUS_WHEELS), installed offline into OUT_DIR/work/site (on PYTHONPATH);
#  2. build: the native libraries for this GPU's architecture only (<major><minor>-real from
#     torch.cuda.get_device_capability), the package installed offline (pip --no-index --no-deps
#     --no-build-isolation) into OUT_DIR/work/pkg; if pip cannot, CMake directly (reported as failed);
#     without a GPU: the host libraries only (CPU and CUDA emulation);
#  3. `python -m exodus_lightning.gpu_acceptance`: environment, the CUDA tests grouped into the
#     correctness checks, the quickstart with bf16-mixed, the layer benchmark; OUT_DIR/report.md and
#     OUT_DIR/report.json.
#
# Every step is timed against one wall-time budget (--budget, default 480 s). Without a GPU (or with
# --dry) it is the dry mode: every GPU step is reported as skipped with the reason. Exit code: non-zero
# when a correctness check or a step failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="gpu-acceptance"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then OUT="$1"; shift; fi
WHEELS="${EXODUS_WHEELS:-}"
BUDGET=480
DRY=0
BUILD=1
PASS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS="${2:?--wheels needs a folder}"; shift 2 ;;
    --budget) BUDGET="${2:?--budget needs seconds}"; shift 2 ;;
    --dry) DRY=1; PASS+=(--dry); shift ;;
    --no-build) BUILD=0; shift ;;
    *) PASS+=("$1"); shift ;;
  esac
done
case "$BUDGET" in ''|*[!0-9]*) echo "gpu_acceptance.sh: --budget must be whole seconds, got '$BUDGET'" >&2; exit 2 ;; esac

PY="${PYTHON:-python3}"
# a CUDA toolkit installed where CMake looks only through PATH
if ! command -v nvcc > /dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
START=$(date +%s)
DEADLINE=$((START + BUDGET))
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$OUT/work"
STEPS="$OUT/steps.tsv"
mkdir -p "$WORK"
: > "$STEPS"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 WANDB_MODE=disabled

say() { echo "[gpu-acceptance $(( $(date +%s) - START ))s] $*"; }
left() { local s=$(( DEADLINE - $(date +%s) )); [ "$s" -gt 1 ] && echo "$s" || echo 1; }  # timeout 0 would mean none
# record NAME STATUS SECONDS REASON (one line of steps.tsv; tabs and newlines in the reason flattened)
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(printf '%s' "$4" | tr '\t\n' '  ' | cut -c1-1500)" >> "$STEPS"; say "$1: $2 ${4:+- $4}"; }

# ------------------------------------------------------------------------------------ 1. wheels
t=$(date +%s)
if [ -n "$WHEELS" ]; then
  if ! ls "$WHEELS"/*.whl > /dev/null 2>&1; then
    record wheels failed 0 "no *.whl in $WHEELS"
  elif "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
        "$WHEELS"/*.whl > "$OUT/wheels.log" 2>&1; then
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
    record wheels passed $(( $(date +%s) - t )) "$(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $WORK/site"
  else
    record wheels failed $(( $(date +%s) - t )) "pip install from $WHEELS failed: $(tail -c 1000 "$OUT/wheels.log")"
  fi
else
  record wheels skipped 0 "no wheels folder (--wheels DIR or \$EXODUS_WHEELS): the installed packages are used"
fi

# ------------------------------------------------------------------------------------ 2. build
# the GPU's architecture, or nothing (no GPU, or --dry)
ARCH=""
if [ "$DRY" = 0 ]; then
  ARCH="$("$PY" -c 'import torch
if torch.cuda.is_available():
    print("%d%d" % torch.cuda.get_device_capability(0))' 2>/dev/null || true)"
fi
t=$(date +%s)
if [ "$BUILD" = 0 ]; then
  record build skipped 0 "--no-build: the package already installed is used"
else
  if [ -n "$ARCH" ]; then
    export EXODUS_CUDA_ARCHITECTURES="${ARCH}-real" EXODUS_REQUIRE_CUDA=ON EXODUS_BUILD_CUDA=ON
    what="native libraries for sm_${ARCH} (EXODUS_CUDA_ARCHITECTURES=${ARCH}-real)"
  else
    export EXODUS_BUILD_CUDA=OFF EXODUS_REQUIRE_CUDA=OFF
    what="host libraries only (no GPU: CPU and CUDA emulation)"
  fi
  say "build: $what, $(left) s left"
  rm -rf "$WORK/pkg"
  set +e
  timeout "$(left)" "$PY" -m pip install --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir \
      --target "$WORK/pkg" -C "build-dir=$WORK/build" "$ROOT" > "$OUT/build.log" 2>&1
  rc=$?
  set -e
  if [ "$rc" = 0 ] && [ -d "$WORK/pkg/exodus_lightning/_lib" ]; then
    export EXODUS_NATIVE_LIB="$WORK/pkg/exodus_lightning/_lib"
    export PYTHONPATH="$WORK/pkg${PYTHONPATH:+:$PYTHONPATH}"
    record build passed $(( $(date +%s) - t )) "$what, pip install --no-index --no-build-isolation into $WORK/pkg"
  else
    pip_tail="$(tail -c 800 "$OUT/build.log")"
    say "build: pip failed ($rc); CMake directly"
    set +e
    { cmake -S "$ROOT" -B "$WORK/cmake-build" -DCMAKE_BUILD_TYPE=Release \
          -DEXODUS_BUILD_CUDA="$EXODUS_BUILD_CUDA" -DEXODUS_REQUIRE_CUDA="$EXODUS_REQUIRE_CUDA" \
          -DEXODUS_CUDA_ARCHITECTURES="${EXODUS_CUDA_ARCHITECTURES:-}" \
        && timeout "$(left)" cmake --build "$WORK/cmake-build" -j "$(nproc)" \
        && cmake --install "$WORK/cmake-build" --prefix "$WORK/cmake-install"; } > "$OUT/build-cmake.log" 2>&1
    crc=$?
    set -e
    if [ "$crc" = 0 ]; then
      export EXODUS_NATIVE_LIB="$WORK/cmake-install/exodus_lightning/_lib"
      record build failed $(( $(date +%s) - t )) "pip install failed ($rc; the rest ran on a CMake build of the $what): $pip_tail"
    else
      record build failed $(( $(date +%s) - t )) "pip install failed ($rc) and CMake too ($crc): $(tail -c 800 "$OUT/build-cmake.log")"
    fi
  fi
fi

# ------------------------------------------------------------------------------------ 3. the rest
cd "$ROOT"
say "running the checks, $(left) s left"
set +e
"$PY" -m exodus_lightning.gpu_acceptance --out "$OUT" --started "$START" --deadline "$DEADLINE" \
    --steps-file "$STEPS" ${PASS[@]+"${PASS[@]}"}
rc=$?
set -e
say "done in $(( $(date +%s) - START )) s: $OUT/report.md (exit $rc)"
exit "$rc"
