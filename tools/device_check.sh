#!/usr/bin/env bash
# The check of a machine with a GPU: trains config/train/gpu.yaml for a time budget, exports the
# networks, benches ONNX Runtime's CUDA and TensorRT providers (vode bench end to end, model
# only) and the same networks in PyTorch eager on the same card, in one run; prints one JSON
# document (also written to OUT/device_check.json). See tools/device_check.py.
#
#   tools/device_check.sh [--minutes M] [--out DIR] [--config YAML] [--dry-run]
#
# Python: $VODE_PYTHON, else .venv/bin/python, else python3. ONNX Runtime's GPU providers come
# from the onnxruntime-gpu package, which must replace onnxruntime, never sit beside it; this
# script installs nothing (a GPU machine may have no network): give it a venv that has
# onnxruntime-gpu, e.g.
#   python3 -m venv /opt/vode-gpu && /opt/vode-gpu/bin/pip install -r requirements.txt \
#     && /opt/vode-gpu/bin/pip uninstall -y onnxruntime && /opt/vode-gpu/bin/pip install onnxruntime-gpu
#   VODE_PYTHON=/opt/vode-gpu/bin/python tools/device_check.sh --minutes 5
# Without a GPU (or a provider) the JSON says which one is unavailable and why; exit status 0.
# Exit 1: the check itself failed (the JSON holds the error); 2: a bad argument.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${VODE_PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x "$here/.venv/bin/python" ]]; then py="$here/.venv/bin/python"; else py="python3"; fi
fi
if ! "$py" -c "import torch, onnxruntime, onnx" 2>/dev/null; then
  echo "{\"check\": \"vode device check\", \"error\": \"$py lacks torch, onnxruntime or onnx; set VODE_PYTHON to a venv that has the project's requirements\"}"
  exit 1
fi
cd "$here"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" "$here/tools/device_check.py" "$@"
