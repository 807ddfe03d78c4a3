#!/usr/bin/env bash
# Idempotent install of convnext_backbone and its stack into a venv.
#
#   STACK=upstream        which OpenMMLab distributions (default):
#                         upstream: mmcv 2.1.0, mmengine 0.10.7, mmdet 3.3.0,
#                           mmsegmentation 1.2.2, mmpose, mmpretrain 1.2.0
#                           (which needs torchvision: it imports on the onedl
#                           profile only) (requirements/runtime.txt,
#                           constraints.txt, downstream.txt);
#                         onedl: the maintained forks onedl-mmcv 2.3.6,
#                           onedl-mmengine, onedl-mmdetection,
#                           onedl-mmsegmentation, onedl-mmpretrain, with
#                           mmpose, timm, torch 2.14.1 + torchvision 0.29.1
#                           (requirements/*-onedl.txt).
#   VENV=.venv (default; .venv-onedl for STACK=onedl)  the environment;
#                         created if missing. To use a CUDA torch, create the
#                         venv yourself and install torch in it first: an
#                         importable torch is always kept, and mmcv's ops are
#                         built against it.
#   CONVNEXT_BACKBONE_CACHE  where built mmcv wheels are kept, keyed by mmcv,
#                         torch, CUDA, GPU architectures and Python (default
#                         ${XDG_CACHE_HOME:-~/.cache}/convnext_backbone).
#   TORCH_CUDA_ARCH_LIST  GPU architectures of mmcv's CUDA ops (e.g. "9.0";
#                         default: those of the visible GPUs).
#   MMCV_CUDA=0           build mmcv's CPU ops only, even with a GPU visible.
#
# numpy: an installed numpy (1.26 or 2.x) is kept; a new environment gets the
# versions of the stack's constraints file (numpy 2).
#
# mmcv 2.1.0 (the newest that mmdet 3.3 / mmseg 1.2 accept) has no wheel for
# today's torch: it is built from its source tarball with its C++ ops the
# first time (measured: 340-541 s on 2 cores with CPU ops, 2026-12-01..04;
# 393 s on 16 cores with CUDA ops for one GPU architecture) and installed
# from the cache afterwards.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
REQ=$REPO/requirements
STACK=${STACK:-upstream}
case $STACK in
  upstream)
    VENV=${VENV:-$REPO/.venv}
    MMCV_DIST=mmcv MMCV_VERSION=2.1.0
    TORCH_DEFAULT=(torch==2.13.0)
    RUNTIME=$REQ/runtime.txt CONSTRAINTS_FILE=$REQ/constraints.txt
    EXTRA=$REQ/downstream.txt ;;
  onedl)
    VENV=${VENV:-$REPO/.venv-onedl}
    MMCV_DIST=onedl-mmcv MMCV_VERSION=2.3.6
    # The newest torch with a torchvision that imports beside it here
    # (timm and mmpretrain need torchvision; PyPI's CPU torch 2.13.0 has
    # none that loads): a CUDA build, it runs on the CPU.
    TORCH_DEFAULT=(torch==2.14.1 torchvision==0.29.1)
    RUNTIME=$REQ/runtime-onedl.txt CONSTRAINTS_FILE=$REQ/constraints-onedl.txt
    EXTRA=$REQ/downstream-onedl.txt ;;
  *)
    echo "[install] ERROR: unknown STACK=$STACK; choose upstream (default) or onedl" >&2
    exit 2 ;;
esac
export MMCV_VERSION
CACHE=${CONVNEXT_BACKBONE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/convnext_backbone}

log() { echo "[install] $*"; }

if [[ ! -x "$VENV/bin/python" ]]; then
  PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
  log "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

# numpy as the environment had it before torch came in (torchvision brings
# one): an environment's own numpy is kept, a new one gets the constraints.
NUMPY_HAVE=$("$PY" -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)
if "$PY" -c 'import torch' 2>/dev/null; then
  log "keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  log "installing ${TORCH_DEFAULT[*]}"
  pip_install "${TORCH_DEFAULT[@]}"
fi
# Build requirements of mmcv's setup.py (it imports pkg_resources; its ops
# include no numpy header, so numpy is left to the requirements below).
pip_install "setuptools>=77,<81" wheel ninja packaging

mmcv_ops_ok() {
  "$PY" - <<'PY' 2>/dev/null
import os, torch, mmcv
from mmcv.ops import nms
assert mmcv.__version__ == os.environ['MMCV_VERSION'], mmcv.__version__
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
dets, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
assert keep.tolist() == [0, 2], keep
PY
}

# What to build mmcv's ops for: CUDA when this torch has CUDA and either GPUs
# are visible or TORCH_CUDA_ARCH_LIST names architectures (then only those:
# every architecture of a CUDA release would multiply the build time).
cuda_plan() {
  "$PY" - <<'PY'
import os, warnings
warnings.filterwarnings("ignore")  # torch warns when numpy is not installed yet
import torch
from torch.utils.cpp_extension import CUDA_HOME
archs = os.environ.get('TORCH_CUDA_ARCH_LIST', '').strip()
if os.environ.get('MMCV_CUDA', '1') == '0' or torch.version.cuda is None:
    print('cpu')
elif not archs and not torch.cuda.is_available():
    print('cpu')
else:
    if not archs:
        archs = ';'.join(sorted({'%d.%d' % torch.cuda.get_device_capability(i)
                                 for i in range(torch.cuda.device_count())}))
    if CUDA_HOME is None:
        print('nocuda', torch.version.cuda, archs)
    else:
        print('cuda', torch.version.cuda, archs)
PY
}

# The build runs in the background; this prints the elapsed time every
# minute so a first install does not look hung.
build_with_progress() {
  local expected=$1; shift
  local start=$(date +%s)
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 10
    local elapsed=$(( $(date +%s) - start ))
    if kill -0 "$pid" 2>/dev/null && (( elapsed % 60 < 10 )); then
      log "mmcv build: $(( elapsed / 60 )) min elapsed (expected up to ~$expected min)"
    fi
  done
  wait "$pid"
  log "mmcv built in $(( $(date +%s) - start )) s"
}

if mmcv_ops_ok; then
  log "$MMCV_DIST $MMCV_VERSION with ops already installed"
else
  read -r PLAN CUDA_VERSION ARCHS <<<"$(cuda_plan)"
  if [[ $PLAN == nocuda ]]; then
    echo "[install] ERROR: torch has CUDA $CUDA_VERSION and GPUs ($ARCHS) are visible, but no CUDA toolkit (nvcc) was found to build mmcv's CUDA ops." >&2
    echo "[install] Install the CUDA $CUDA_VERSION toolkit and set CUDA_HOME, or set MMCV_CUDA=0 to build CPU ops only." >&2
    exit 1
  fi
  # CPU builds keep the key of earlier versions of this script (its cache
  # stays valid); CUDA builds add the CUDA version and architectures.
  KEY=$("$PY" -c "import sys, torch; print(f'$MMCV_DIST-$MMCV_VERSION-torch{torch.__version__}-cp{sys.version_info[0]}{sys.version_info[1]}')")
  JOBS=${MAX_JOBS:-$(nproc)}
  if [[ $PLAN == cuda ]]; then
    KEY="$KEY-cuda$CUDA_VERSION-sm${ARCHS//;/_}"
    # 393 s on 16 cores for one architecture; scales with both
    N_ARCHS=$(( $(tr -cd ';' <<<"$ARCHS" | wc -c) + 1 ))
    EXPECTED=$(( (393 * 16 * N_ARCHS / JOBS + 59) / 60 ))
    BUILD_ENV=(FORCE_CUDA=1 "TORCH_CUDA_ARCH_LIST=$ARCHS")
    WHAT="CPU and CUDA $CUDA_VERSION ops for architectures $ARCHS"
  else
    # measured on 2 cores: mmcv 2.1.0 340-490 s, onedl-mmcv 2.3.6 541 s
    EXPECTED=$(( (541 * 2 / JOBS + 59) / 60 ))
    BUILD_ENV=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)  # CPU ops even beside a GPU
    WHAT="CPU ops"
  fi
  # CPU ops compile through tools/lib/mmcv_cxx.sh: without debug info, and
  # with C++20 where torch's headers need it (torch >= 2.14).
  if [[ $PLAN == cpu ]]; then
    BUILD_ENV+=("CXX=$REPO/tools/lib/mmcv_cxx.sh")
  fi
  if "$PY" -c "import os, sys, torch; sys.exit('C++20 or later' not in open(os.path.join(os.path.dirname(torch.__file__), 'include', 'ATen', 'ATen.h')).read())"; then
    BUILD_ENV+=(MMCV_CXX_STD=c++20 "CXX=$REPO/tools/lib/mmcv_cxx.sh")
    WHAT="$WHAT, C++20"
  fi
  WHEEL_DIR="$CACHE/wheels/$KEY"
  WHEEL=$(ls "$WHEEL_DIR"/*.whl 2>/dev/null | head -1 || true)
  if [[ -z "$WHEEL" ]]; then
    log "building $MMCV_DIST $MMCV_VERSION with $WHAT on $JOBS cores: up to ~$EXPECTED min the first time; cached in $WHEEL_DIR"
    TMP=$(mktemp -d)
    trap 'rm -rf "$TMP"' EXIT
    "$PY" -m pip download -q --no-deps --no-binary :all: "$MMCV_DIST==$MMCV_VERSION" -d "$TMP/src"
    build_with_progress "$EXPECTED" env MMCV_WITH_OPS=1 MAX_JOBS="$JOBS" "${BUILD_ENV[@]}" \
      "$PY" -m pip wheel -q --no-build-isolation --no-deps -w "$TMP/wheel" "$TMP"/src/*.tar.gz
    mkdir -p "$WHEEL_DIR"
    mv "$TMP"/wheel/*.whl "$WHEEL_DIR"/
    WHEEL=$(ls "$WHEEL_DIR"/*.whl | head -1)
  else
    log "using cached $WHEEL"
  fi
  pip_install --no-deps --force-reinstall "$WHEEL"
fi

# An installed numpy is kept whatever else asks for (a CUDA image's scipy may
# need numpy 2, an older environment 1.26); a new environment gets the
# tested versions of requirements/constraints.txt.
CONSTRAINTS=$(mktemp)
if [[ -n $NUMPY_HAVE ]]; then
  log "keeping installed numpy $NUMPY_HAVE"
  echo "numpy==$NUMPY_HAVE" >"$CONSTRAINTS"
else
  cp "$CONSTRAINTS_FILE" "$CONSTRAINTS"
fi
log "installing the $STACK requirements"
pip_install -c "$CONSTRAINTS" -r "$RUNTIME" -r "$REQ/tests.txt"
# Downstream projects the suite runs ConvNeXt in, and the benchmark's peers.
# --no-deps: pip never touches torch, numpy, mmcv or mmengine; Cython first,
# to build xtcocotools against the installed numpy.
pip_install --no-deps 'cython>=3,<4'
pip_install --no-deps --no-build-isolation -r "$EXTRA"
# ONNX export and onnxruntime (tools/deploy.py, tests/test_deploy.py).
pip_install -c "$CONSTRAINTS" -r "$REQ/deploy.txt"
rm -f "$CONSTRAINTS"
pip_install --no-deps --no-build-isolation -e "$REPO"

if ! mmcv_ops_ok; then
  echo "[install] ERROR: mmcv.ops did not import or nms failed: $MMCV_DIST was built without its C++ ops." >&2
  echo "[install] Remove the cached wheel under $CACHE/wheels and rerun; see the build log above." >&2
  exit 1
fi
"$PY" -c "import convnext_backbone, mmdet, mmseg, numpy, torch; print('[install] ok ($STACK): torch', torch.__version__, 'numpy', numpy.__version__, 'mmdet', mmdet.__version__, 'mmseg', mmseg.__version__)"
