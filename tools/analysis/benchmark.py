"""Speed and memory of the ConvNeXt backbone and of whole models.

Backbone: every option combination asked for, each measured for this
package's ``ConvNeXt`` (``--versions 1 2``: and ``ConvNeXtV2``) and for the
plain reference formulation (:mod:`tools.lib.reference`, the official
code's way) in the same run, so every figure is also a ratio; and the
device's own limits (matmul rate per precision, copy bandwidth), so GFLOP/s
are also a fraction of what the device can do. ``--peers timm mmpretrain``
adds those libraries' ConvNeXt, each first checked to compute the same
features from the same weights::

    python tools/analysis/benchmark.py backbone --arch tiny --shape 512 512 \\
        --batch 1 --modes infer
    python tools/analysis/benchmark.py backbone --modes train --with-cp off on
    python tools/analysis/benchmark.py backbone --versions 1 2 \\
        --peers timm mmpretrain
    python tools/analysis/benchmark.py backbone --device cuda --batch 64 \\
        --precisions fp16 --channels-last on off --compile off on

Whole model from a config (random weights, synthetic images and
annotations; the train step is the config's own ``train_step`` with its
optimizer wrapper); ``--peers mmpretrain`` also times the config with
mmpretrain's ConvNeXt as its backbone, the same weights in both::

    python tools/analysis/benchmark.py model \\
        configs/mask_rcnn_convnext_t.py --shape 800 1333 --peers mmpretrain

LayerNorm over channels, each formulation on NCHW and channels-last memory
(how the backbone's choice was made)::

    python tools/analysis/benchmark.py layernorm --shape 1 96 128 128

One convolution of a head (default: UperNet-T's fpn_bottleneck at 512),
every way PyTorch runs it on CPU and in onnxruntime, against the GEMM
rate::

    python tools/analysis/benchmark.py conv --onnxruntime

On CUDA steps are timed with CUDA events and cuDNN's autotuner is on.
Prints markdown tables; ``--json PATH`` also writes every figure. Figures
are defined in :mod:`tools.lib.measure`.
"""
import argparse
import json
import os.path as osp
import sys
from typing import Dict, Optional

import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# Each mode's options and run are in its module.
from tools.analysis import (  # noqa: E402
    bench_backbone, bench_conv, bench_layernorm, bench_model)

MODES = dict(backbone=bench_backbone, layernorm=bench_layernorm,
             model=bench_model, conv=bench_conv)
HELP = dict(backbone='ConvNeXt vs the reference formulation',
            layernorm='LayerNorm over channels: the formulations',
            model='a det/seg config\'s whole model',
            conv='one head convolution: PyTorch\'s ways and onnxruntime')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n', 2)[2])
    sub = parser.add_subparsers(dest='command', required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--device', default='cpu', help='cpu or cuda[:i]')
    common.add_argument('--iters', type=int, default=10,
                        help='timed iterations (the median is reported)')
    common.add_argument('--warmup', type=int, default=3)
    common.add_argument('--threads', type=int,
                        help='torch CPU threads (default: torch\'s choice)')
    common.add_argument('--json', metavar='PATH',
                        help='also write every figure to this JSON file')
    common.add_argument('--copy-mib', type=int,
                        help='size of the copy_ that measures the memory '
                        'bandwidth (default: 1024 on CUDA, 256 on CPU)')
    for name, module in MODES.items():
        module.add_arguments(
            sub.add_parser(name, parents=[common], help=HELP[name]))
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0:
        parser.error(f'--iters {args.iters} / --warmup {args.warmup}: need '
                     'at least 1 timed iteration and no negative warm-up')
    return args


def _device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == 'cuda' and not torch.cuda.is_available():
        sys.exit(f'error: --device {name}: CUDA is not available here; use '
                 '--device cpu')
    if device.type not in ('cpu', 'cuda'):
        sys.exit(f'error: --device {name}: use cpu or cuda[:i]')
    if device.type == 'cuda':
        prepare_cuda(device)
    return device


def prepare_cuda(device: torch.device, backends=torch.backends,
                 cuda=torch.cuda) -> None:
    """Make ``device`` current (CUDA events record on the current
    device's stream) and let cuDNN pick the fastest algorithm per shape
    (each step's shapes repeat, and the warm-up pays for the search)."""
    if device.index is not None:  # plain 'cuda' is the current device
        cuda.set_device(device)
    backends.cudnn.benchmark = True


def main(argv=None) -> Optional[Dict[str, object]]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = MODES[args.command].run(args, _device(args.device))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
        print(f'wrote {args.json}')
    return result


if __name__ == '__main__':
    main()
