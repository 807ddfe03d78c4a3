#!/usr/bin/env bash
# Idempotent install of convnext_backbone and its pinned stack into a venv.
#
#   VENV=.venv (default)  the environment; created if missing. To use a CUDA
#                         torch, create the venv yourself and install torch in
#                         it first: an importable torch is always kept, and
#                         mmcv's ops are built against it.
#   CONVNEXT_BACKBONE_CACHE  where built mmcv wheels are kept, keyed by mmcv,
#                         torch and Python versions (default
#                         ${XDG_CACHE_HOME:-~/.cache}/convnext_backbone).
#
# mmcv 2.1.0 (the newest that mmdet 3.3 / mmseg 1.2 accept) has no wheel for
# today's torch: it is built from its source tarball with its C++ ops, which
# takes ~18 min on 2 cores the first time and seconds afterwards (cache).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$REPO/.venv}
MMCV_VERSION=2.1.0
TORCH_DEFAULT=2.13.0
CACHE=${CONVNEXT_BACKBONE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/convnext_backbone}

log() { echo "[install] $*"; }

if [[ ! -x "$VENV/bin/python" ]]; then
  PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
  log "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

if "$PY" -c 'import torch' 2>/dev/null; then
  log "keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  log "installing torch==$TORCH_DEFAULT"
  pip_install "torch==$TORCH_DEFAULT"
fi
# Build requirements of mmcv's setup.py (it imports pkg_resources).
pip_install "setuptools>=77,<81" wheel ninja numpy==1.26.4 packaging

mmcv_ops_ok() {
  "$PY" - <<'PY' 2>/dev/null
import torch, mmcv
from mmcv.ops import nms
assert mmcv.__version__ == '2.1.0', mmcv.__version__
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
dets, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
assert keep.tolist() == [0, 2], keep
PY
}

if mmcv_ops_ok; then
  log "mmcv $MMCV_VERSION with ops already installed"
else
  KEY=$("$PY" -c "import sys, torch; print(f'mmcv-$MMCV_VERSION-torch{torch.__version__}-cp{sys.version_info[0]}{sys.version_info[1]}')")
  WHEEL_DIR="$CACHE/wheels/$KEY"
  WHEEL=$(ls "$WHEEL_DIR"/mmcv-*.whl 2>/dev/null | head -1 || true)
  if [[ -z "$WHEEL" ]]; then
    log "building mmcv $MMCV_VERSION with ops against torch (~18 min on 2 cores; cached in $WHEEL_DIR)"
    TMP=$(mktemp -d)
    trap 'rm -rf "$TMP"' EXIT
    "$PY" -m pip download -q --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$TMP/src"
    start=$(date +%s)
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" -m pip wheel -q \
      --no-build-isolation --no-deps -w "$TMP/wheel" "$TMP"/src/mmcv-*.tar.gz
    log "mmcv built in $(( $(date +%s) - start )) s"
    mkdir -p "$WHEEL_DIR"
    mv "$TMP"/wheel/mmcv-*.whl "$WHEEL_DIR"/
    WHEEL=$(ls "$WHEEL_DIR"/mmcv-*.whl | head -1)
  else
    log "using cached $WHEEL"
  fi
  pip_install --no-deps --force-reinstall "$WHEEL"
fi

log "installing pinned requirements"
pip_install -r "$REPO/requirements/runtime.txt" -r "$REPO/requirements/tests.txt"
pip_install --no-deps --no-build-isolation -e "$REPO"

if ! mmcv_ops_ok; then
  echo "[install] ERROR: mmcv.ops did not import or nms failed: mmcv was built without its C++ ops." >&2
  echo "[install] Remove the cached wheel under $CACHE/wheels and rerun; see the build log above." >&2
  exit 1
fi
"$PY" -c "import convnext_backbone, mmdet, mmseg; print('[install] ok: mmdet', mmdet.__version__, 'mmseg', mmseg.__version__)"
