#!/usr/bin/env bash
# make gpu-check: the CUDA path in one prepared command, everything written to one report.
# Runs with the machine's own python3 (a CUDA build of torch is already there: no venv is made).
# streamlit, plotly and captum, when missing there, travel as wheels in .whl/ beside the checkout:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 ... -d .whl NAME==VERSION
# Each part has its own time limit so that the whole fits 8 minutes on one H200.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${GPU_PYTHON:-python3}
DIR=${GPU_REPORT:-${OUT:-gpu-report}}
mkdir -p "$DIR"
REPORT="$DIR/gpu-report.txt"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/resnet-lab-site \
    .whl/*.whl || { echo "could not install the wheels in .whl/"; exit 2; }
  export PYTHONPATH="$PWD:/tmp/resnet-lab-site${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 RESNET_LAB_CACHE=/tmp/resnet-lab-cache
status=0
step() {  # step TITLE LIMIT_S CMD...
  local title=$1 limit=$2; shift 2
  echo "== $title (limit ${limit} s)"
  local t0=$SECONDS
  timeout -k 10 "$limit" "$@"; local rc=$?
  echo "== $title: exit $rc after $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || status=1
}
{
  echo "== machine"; date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "$PY" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { echo "no CUDA GPU here: nothing to check"; exit 2; }
  step "tests/gpu" 120 "$PY" -m pytest tests/gpu -q -rs -p no:cacheprovider -o addopts=""
  step "bench/gpu_throughput.py" 170 "$PY" bench/gpu_throughput.py --depths 20,56 --epochs 1 --steps 30
  step "reproduce fig6 --scale paper (CIFAR-sized stand-in, 500 steps)" 120 \
    "$PY" -m resnet_core reproduce fig6 --scale paper --dataset synthetic --n-train 50000 --n-test 10000 \
      --steps 500 --parallel 4 --device cuda --runs-dir /tmp/resnet-lab-gpu-runs --out "$DIR/figures" --quiet
  step "python -m resnet_core estimate --calibrate --device cuda" 60 "$PY" -m resnet_core estimate --calibrate --device cuda --scale paper
  echo "== gpu-check: $([ $status -eq 0 ] && echo passed || echo FAILED)"
  exit $status
} 2>&1 | tee "$REPORT"
exit "${PIPESTATUS[0]}"
