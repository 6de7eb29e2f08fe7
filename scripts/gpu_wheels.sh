#!/usr/bin/env bash
# The wheels folder of scripts/gpu_acceptance.sh, made on a machine that reaches the package registry:
#
#   bash scripts/gpu_wheels.sh [WHEELS_DIR]        (default .whl, which .git/info/exclude should ignore)
#
# The GPU machine has PyTorch with CUDA 13, Triton, CuPy, Lightning, torchmetrics, numpy, h5py,
# matplotlib, scipy, torchvision, pytest, hypothesis, CMake, ninja and scikit-build-core, and no registry.
# It lacks the pure-Python packages below, fetched here with their exact versions and no dependencies
# (each one's missing requirements are listed too; sinabs' samna and tonic's librosa/expelliarmus are
# imported only by features not used here):
#   - the `fit` command line: jsonargparse[signatures] = jsonargparse, docstring-parser, typeshed-client;
#   - the CUDA test of the data path (tests/test_data_equivalence.py imports tonic): tonic, importRosbag;
#   - the layer benchmark's peers: snntorch, norse (an sdist only: built into a py3 wheel here), sinabs
#     (+ pbr, nir, nirtorch), spikingjelly (+ loguru).
set -euo pipefail

DIR="${1:-.whl}"
PY="${PYTHON:-python3}"
mkdir -p "$DIR"
# the GPU machine's Python (3.12, x86-64, manylinux): only pure-Python wheels are fetched anyway
TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
PURE=(
  jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0
  tonic==1.7.0 importRosbag==1.0.4
  snntorch==1.0.0 sinabs==3.1.3 pbr==7.1.3 nir==1.0.8 nirtorch==2.6
  spikingjelly==2.0.0 loguru==0.7.3
)
"$PY" -m pip download -q --no-deps "${TARGET[@]}" -d "$DIR" "${PURE[@]}"
# norse publishes no wheel: build its pure-Python one (setuptools, no compiled extension)
"$PY" -m pip wheel -q --no-deps -w "$DIR" norse==1.1.0
rm -f "$DIR"/*.tar.gz "$DIR"/*.zip
bad=$(ls "$DIR"/*.whl | grep -v -E -- '-(py3|py2\.py3)-none-any\.whl$' || true)
if [ -n "$bad" ]; then
  echo "gpu_wheels.sh: not pure-Python (would not run on the GPU machine's Python): $bad" >&2
  exit 1
fi
echo "$(ls "$DIR"/*.whl | wc -l) wheels, $(du -sh "$DIR" | cut -f1) in $DIR"
