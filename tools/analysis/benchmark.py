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

On CUDA steps are timed with CUDA events and cuDNN's autotuner is on.
Prints markdown tables; ``--json PATH`` also writes every figure. Figures
are defined in :mod:`tools.lib.measure`.
"""
import argparse
import contextlib
import copy
import importlib
import json
import os.path as osp
import re
import sys
import traceback
from typing import Callable, Dict, List, NamedTuple, Optional

import torch
from mmengine.config import DictAction

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from convnext_backbone import (  # noqa: E402
    ConvNeXt, ConvNeXtV2, convert_to_convnext)
from convnext_backbone.presets import preset_name, resolve_arch  # noqa
from tools.lib.cfg_walk import iter_dicts  # noqa: E402
from tools.lib.measure import (  # noqa: E402
    copy_step, count_flops, default_copy_bytes, default_matmul_size, fraction,
    interleaved_times, limit_rates, limit_seconds, limit_steps, machine_info,
    max_relative_error, median, peak_step_memory)
from tools.lib.reference import (  # noqa: E402
    ReferenceConvNeXt, ReferenceConvNeXtV2)

PRECISIONS = {
    'fp32': torch.float32,
    'bf16': torch.bfloat16,
    'fp16': torch.float16
}
ON_OFF = {'on': True, 'off': False}
MiB = 2**20


def _on_off(value: str) -> bool:
    if value not in ON_OFF:
        raise argparse.ArgumentTypeError(
            f"{value!r}: use 'on' or 'off'")
    return ON_OFF[value]


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

    bb = sub.add_parser('backbone', parents=[common],
                        help='ConvNeXt vs the reference formulation')
    bb.add_argument('--arch', default='tiny')
    bb.add_argument('--versions', nargs='+', type=int, choices=(1, 2),
                    default=(1, ),
                    help='ConvNeXt (1) and/or ConvNeXtV2 (2), same preset')
    bb.add_argument('--shape', type=int, nargs=2, default=(224, 224),
                    metavar=('H', 'W'))
    bb.add_argument('--batch', type=int, default=8)
    bb.add_argument('--modes', nargs='+', choices=('infer', 'train'),
                    default=('infer', 'train'))
    bb.add_argument('--precisions', nargs='+', choices=tuple(PRECISIONS),
                    default=('fp32', ),
                    help='fp32, or autocast to bf16 / fp16')
    bb.add_argument('--channels-last', nargs='+', type=_on_off,
                    default=(True, ), metavar='on|off')
    bb.add_argument('--with-cp', nargs='+', type=_on_off,
                    default=(False, ), metavar='on|off',
                    help='gradient checkpointing (train rows only)')
    bb.add_argument('--compile', nargs='+', type=_on_off, default=(False, ),
                    metavar='on|off', help='torch.compile the model')
    bb.add_argument('--impls', nargs='+', choices=('convnext', 'reference'),
                    default=('convnext', 'reference'))
    bb.add_argument('--peers', nargs='+', choices=tuple(PEERS), default=(),
                    help='also time these implementations of the same '
                    'backbone, each first checked to give the same features '
                    'from the same weights')
    bb.add_argument('--matmul-size', type=int,
                    help='side of the torch.mm limit (default: 8192 on '
                    'CUDA, 2048 on CPU)')

    norm = sub.add_parser('layernorm', parents=[common],
                          help='LayerNorm over channels: the formulations')
    norm.add_argument('--shape', type=int, nargs=4, default=(1, 96, 128, 128),
                      metavar=('N', 'C', 'H', 'W'),
                      help='activation shape (default: ConvNeXt-T stage 0 '
                      'at 512x512)')
    norm.add_argument('--modes', nargs='+', choices=('infer', 'train'),
                      default=('infer', 'train'))

    model = sub.add_parser('model', parents=[common],
                           help='a det/seg config\'s whole model')
    model.add_argument('config')
    model.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                       help='input size (default: 800 1333 for detection, '
                       'the crop size for segmentation)')
    model.add_argument('--batch', type=int,
                       help='images per step (default: 1 for inference, '
                       "the config's train_dataloader.batch_size, i.e. per "
                       'GPU, for the train step)')
    model.add_argument('--modes', nargs='+', choices=('infer', 'train'),
                       default=('infer', 'train'))
    model.add_argument('--cfg-options', nargs='+', action=DictAction,
                       help='override config entries, key=value')
    model.add_argument('--peers', nargs='+', choices=tuple(PEERS),
                       default=(),
                       help='mmpretrain: also time the config with '
                       "mmpretrain's ConvNeXt as its backbone, the same "
                       'weights in both')
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


def _describe(machine: Dict[str, object]) -> str:
    line = (f"{machine['name']} ({machine['device']}, {machine['threads']} "
            f"threads, torch {machine['torch']})")
    if 'cudnn_benchmark' in machine:
        line += (f"; CUDA {machine['cuda']}, cuDNN {machine['cudnn']}, "
                 f"cudnn.benchmark {_on_off_word(machine['cudnn_benchmark'])}"
                 f", TF32 matmul {_on_off_word(machine['tf32_matmul'])} / "
                 f"cuDNN {_on_off_word(machine['tf32_cudnn'])}; timed with "
                 f"{machine['timer']}")
    return line


def _on_off_word(flag: bool) -> str:
    return 'on' if flag else 'off'


def _print_table(header: List[str], rows: List[List[str]]) -> None:
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for row in rows:
        print('| ' + ' | '.join(row) + ' |')


# ------------------------------------------------------------------- peers
# Other implementations of the same backbone, timed beside this package's
# once their features are checked equal to its own from the same weights.
PEER_TOLERANCE = 1e-4  # max relative error of a feature map in fp32


class Peer(NamedTuple):
    """How to get one peer's backbone.

    ``module`` is imported to tell whether the peer is installed;
    ``build(arch, with_cp, version)`` returns its four-stage feature
    extractor of ConvNeXt V1 or V2;
    ``output_norms`` says whether its features end with a LayerNorm of their
    own (else the check applies this ConvNeXt's ``norm{i}`` to them, which
    the timed peer then does without).
    """
    module: str
    build: Callable[[str, bool, int], torch.nn.Module]
    output_norms: bool
    describe: str


def _build_timm(arch: str, with_cp: bool, version: int) -> torch.nn.Module:
    import timm
    v1 = dict(ls_init_value=1.0) if version == 1 else {}  # V2: none
    model = timm.create_model(
        f"convnext{'v2' if version == 2 else ''}_{arch}", pretrained=False,
        features_only=True, out_indices=(0, 1, 2, 3), **v1)
    if with_cp:
        model.set_grad_checkpointing(True)
    return model


def _build_mmpretrain(arch: str, with_cp: bool,
                      version: int) -> torch.nn.Module:
    from mmpretrain.models import ConvNeXt as MMPretrainConvNeXt
    # mmpretrain's V2 is its ConvNeXt with GRN and no layer scale.
    v2 = dict(use_grn=True, layer_scale_init_value=0.)
    return MMPretrainConvNeXt(
        arch=arch, out_indices=(0, 1, 2, 3), gap_before_final_norm=False,
        with_cp=with_cp,
        **(v2 if version == 2 else dict(layer_scale_init_value=1.0)))


PEERS: Dict[str, Peer] = {
    'timm': Peer('timm', _build_timm, False,
                 "timm.create_model('convnext[v2]_<arch>', "
                 'features_only=True)'),
    'mmpretrain': Peer(
        'mmpretrain.models', _build_mmpretrain, True,
        'mmpretrain.models.ConvNeXt(gap_before_final_norm=False[, '
        'use_grn=True])'),
}


def peer_unavailable(name: str) -> Optional[str]:
    """None if the peer imports here, else a one-line reason."""
    try:
        importlib.import_module(PEERS[name].module)
    except Exception as exc:  # ImportError, or a version check at import
        reason = f'{type(exc).__name__}: {str(exc).splitlines()[0]}'
        if 'torchvision' in reason:
            reason = ('needs torchvision, which does not import beside this '
                      f'torch ({reason})')
        return f'{name} not importable: {reason}'
    return None


def build_peer(name: str, arch: str, with_cp: bool = False,
               version: int = 1, seed: int = 0) -> torch.nn.Module:
    """The peer's backbone with random weights, the same for a seed: its
    own init, every 1-D tensor (norm affine, biases, layer scale, GRN,
    which starts at zero) then shifted by noise so that none is an
    identity and the equality check sees every tensor."""
    torch.manual_seed(seed)
    model = PEERS[name].build(arch, with_cp, version)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim == 1:
                param.add_(torch.randn(param.shape, generator=gen) * 0.1)
    return model


def peer_weights(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """A peer's state dict under this ConvNeXt's names."""
    # timm's features_only model flattens the classifier's Sequentials
    # (stem.0 -> stem_0, stages.1 -> stages_1); convert_to_convnext knows
    # the classifier's names.
    state_dict = {
        re.sub(r'^(stem|stages)_(\d+)\.', r'\1.\2.', key): value
        for key, value in model.state_dict().items()
    }
    return convert_to_convnext(state_dict)


@contextlib.contextmanager
def _no_tf32():
    """fp32 matmuls and convolutions in full fp32 (CUDA's cuDNN uses TF32
    by default), for comparing outputs."""
    saved = (torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = saved


def peer_feature_errors(ours: torch.nn.Module, peer: torch.nn.Module,
                        x: torch.Tensor,
                        output_norms: bool) -> List[float]:
    """Max relative error of each of ``ours``' features vs the peer's
    (fp32, eval mode, no TF32). Without ``output_norms`` the peer's
    features go through ``ours``' ``norm{i}`` first."""
    ours.eval()
    peer.eval()
    with torch.no_grad(), _no_tf32():
        actual = ours(x)
        expected = peer(x)
        if not output_norms:
            expected = [getattr(ours, f'norm{i}')(feature)
                        for i, feature in enumerate(expected)]
    if len(actual) != len(expected):
        raise ValueError(f'{len(expected)} outputs, this ConvNeXt has '
                         f'{len(actual)}')
    return [max_relative_error(a, e) for a, e in zip(actual, expected)]


def check_peer(name: str, arch: str, shape, device: torch.device,
               version: int = 1) -> Dict[str, object]:
    """Whether the peer computes what this ConvNeXt does: its random
    weights converted with ``convert_to_convnext`` into a ConvNeXt (or
    ConvNeXtV2), the features of both compared on two random images.

    Returns:
        dict: ``status`` ('ok', 'refused' or 'unavailable'), ``note`` (one
        line) and, where compared, ``max_relative_errors``.
    """
    reason = peer_unavailable(name)
    if reason is not None:
        return dict(status='unavailable', note=f'{reason}; not timed')
    label = _label(arch, version)
    try:
        peer = build_peer(name, arch, version=version).to(device)
    except Exception as exc:  # e.g. a preset the peer does not define
        return dict(status='unavailable', note=(
            f'{name} cannot build {label}: {type(exc).__name__}: '
            f'{str(exc).splitlines()[0]}; not timed'))
    ours = CONVNEXT_CLASSES[version](arch)
    try:
        missing, unexpected = ours.load_state_dict(peer_weights(peer),
                                                   strict=False)
    except RuntimeError as exc:  # shapes differ
        return dict(status='refused', note=(
            f'{name} refused: its weights do not fit {label} '
            f'({str(exc).splitlines()[1].strip()}); not timed'))
    # Without output norms of its own the peer leaves ours' norm{i} as
    # they are: the check applies them to both.
    missing = [k for k in missing
               if PEERS[name].output_norms or not re.match(r'norm\d\.', k)]
    if missing or unexpected:
        return dict(status='refused', note=(
            f'{name} refused: its weights do not map onto {label} '
            f'(missing {missing[:3]}, unexpected {unexpected[:3]}); not '
            'timed'))
    x = torch.randn(2, 3, *shape, device=device)
    errors = peer_feature_errors(ours.to(device), peer, x,
                                 PEERS[name].output_norms)
    worst = max(errors)
    if not worst <= PEER_TOLERANCE:  # NaN too
        return dict(status='refused', max_relative_errors=errors, note=(
            f'{name} refused: its {label} features differ from this '
            f'package\'s from the same weights (max relative error '
            f'{worst:.1e} > {PEER_TOLERANCE:.0e}); not timed'))
    norms = ('' if PEERS[name].output_norms else
             ' after this ConvNeXt\'s output LayerNorms, which the timed '
             'peer does without')
    return dict(status='ok', max_relative_errors=errors, note=(
        f'{name} ({PEERS[name].describe}): {label} features equal this '
        f'package\'s from the same weights{norms} (max relative error '
        f'{worst:.1e}, fp32); timed'))


# ------------------------------------------------------------------ backbone
CONVNEXT_CLASSES = {1: ConvNeXt, 2: ConvNeXtV2}


def _label(arch: str, version: int) -> str:
    return f"ConvNeXt{'V2' if version == 2 else ''}-{arch}"


def _reference(arch: str, version: int,
               with_cp: bool = False) -> torch.nn.Module:
    # V1 with layer scale 1, so that every branch matters, as after
    # training.
    if version == 2:
        return ReferenceConvNeXtV2(arch, with_cp=with_cp)
    return ReferenceConvNeXt(arch, layer_scale_init_value=1.0,
                             with_cp=with_cp)


def _build_backbone(impl: str, arch: str, version: int, with_cp: bool,
                    channels_last: bool, state_dict: Dict[str, torch.Tensor],
                    device: torch.device) -> torch.nn.Module:
    if impl == 'convnext':
        model = CONVNEXT_CLASSES[version](arch, with_cp=with_cp,
                                          channels_last=channels_last)
        model.load_state_dict(state_dict, strict=False)
        return model.to(device)
    # The reference and the peers get what a user of them would do: the
    # model and the input converted to channels-last.
    if impl == 'reference':
        model = _reference(arch, version, with_cp)
        model.load_state_dict(state_dict)
    else:
        model = build_peer(impl, arch, with_cp, version)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _backbone_step(model, x: torch.Tensor, mode: str, precision: str,
                   device: torch.device):
    dtype = PRECISIONS[precision]

    def step():
        with torch.autocast(device.type, dtype=dtype,
                            enabled=dtype != torch.float32), \
                torch.set_grad_enabled(mode == 'train'):
            outs = model(x)
        if mode == 'train':
            sum(o.float().mean() for o in outs).backward()
            model.zero_grad(set_to_none=True)

    return step


def _backbone_case(args, device, impl, version, mode, precision,
                   channels_last, with_cp, compiled, state_dict):
    """A row's options and its step, run once (so that compilation, and
    what cannot run here, shows now); or the row with an ``error``."""
    row = dict(impl=impl, version=version, mode=mode, precision=precision,
               channels_last=channels_last, with_cp=with_cp,
               compile=compiled)
    try:
        model = _build_backbone(impl, args.arch, version, with_cp,
                                channels_last, state_dict, device)
        model.train(mode == 'train')
        x = torch.randn(args.batch, 3, *args.shape, device=device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if compiled:
            model = torch.compile(model)
        step = _backbone_step(model, x, mode, precision, device)
        step()
    except Exception as exc:  # a combination that cannot run here
        row['error'] = f'{type(exc).__name__}: {str(exc).splitlines()[0]}'
        if not compiled:  # eager failures are bugs: show them in full
            traceback.print_exc()
        return row, None
    return row, step


def run_backbone(args) -> Dict[str, object]:
    device = _device(args.device)
    for version in args.versions:
        try:
            resolve_arch(args.arch, version=version)
        except ValueError as exc:
            sys.exit(f'error: --arch: {exc}')
    # The peers know the preset names, not the paper's short ones ('T').
    args.arch = preset_name(args.arch)
    peers = [dict(peer=name, version=version,
                  **check_peer(name, args.arch, args.shape, device, version))
             for version in args.versions for name in args.peers]
    torch.manual_seed(0)
    # One set of weights per version for this package and the reference.
    state_dicts = {version: _reference(args.arch, version).state_dict()
                   for version in args.versions}

    # FLOPs of the network's forward, counted on the plain reference (fused
    # kernels are invisible to the counter). A training step counts 3x: the
    # backward of a conv / linear layer is two products (input and weight
    # gradients) of the forward's cost. torch's counter is not used for the
    # backward: it ignores groups in convolution_backward (torch 2.13
    # counts a 64-channel depthwise 7x7 backward 65x the forward).
    # with_cp's recomputation is not counted: it is not work done for the
    # result. The counter sees convolutions and products only, so V1 and V2
    # (layer scale / GRN: elementwise) count the same.
    ref = _build_backbone('reference', args.arch, 1, False, False,
                          _reference(args.arch, 1).state_dict(),
                          device).eval()
    x = torch.randn(args.batch, 3, *args.shape, device=device)
    forward_flops = count_flops(_backbone_step(ref, x, 'infer', 'fp32',
                                               device))
    flops = {mode: forward_flops * (3 if mode == 'train' else 1)
             for mode in args.modes}
    del ref, x

    rows, steps = [], {}
    for mode in args.modes:
        for precision in args.precisions:
            for channels_last in args.channels_last:
                for with_cp in (args.with_cp if mode == 'train' else
                                (False, )):
                    for compiled in args.compile:
                        for version in args.versions:
                            impls = list(args.impls) + [
                                p['peer'] for p in peers
                                if p['version'] == version
                                and p['status'] == 'ok']
                            for impl in impls:
                                row, step = _backbone_case(
                                    args, device, impl, version, mode,
                                    precision, channels_last, with_cp,
                                    compiled, state_dicts[version])
                                if step is not None:
                                    steps[len(rows)] = step
                                rows.append(row)
    # The device's limits, timed in the same rounds as the models.
    limit_precisions = (tuple(PRECISIONS) if device.type == 'cuda' else
                        ['fp32'] + [p for p in args.precisions
                                    if p != 'fp32'])
    matmul_size = args.matmul_size or default_matmul_size(device)
    copy_bytes = (args.copy_mib * MiB if args.copy_mib else
                  default_copy_bytes(device))
    limit = list(limit_steps(
        device, {p: PRECISIONS[p] for p in limit_precisions}, matmul_size,
        copy_bytes).items())
    steps.update(limit)
    times = interleaved_times(steps, device, args.iters, args.warmup)
    limits = limit_rates({k: times[k] for k, _ in limit}, device,
                         matmul_size, copy_bytes)
    rates = limits['matmul_gflops']
    onednn = limits['onednn_fp32_matmul_gflops']
    for index, row in enumerate(rows):
        if index not in steps:
            continue
        seconds = median(times[index])
        row['latency_ms'] = seconds * 1e3
        row['img_per_s'] = args.batch / seconds
        row['gflops'] = flops[row['mode']] / seconds / 1e9
        row['matmul_fraction'] = fraction(row['gflops'],
                                          rates[row['precision']])
        if onednn is not None:
            row['onednn_fraction'] = fraction(row['gflops'], onednn)
        row['peak_mb'] = peak_step_memory(steps[index], device) / MiB
    _add_ratios(rows)
    machine = machine_info(device)
    machine['matmul_gflops'] = rates
    machine['onednn_fp32_matmul_gflops'] = onednn
    machine['copy_gb_per_s'] = limits['copy_gb_per_s']
    machine['limits'] = limits

    print(f"{_describe(machine)}; "
          f"{', '.join(_label(args.arch, v) for v in args.versions)}, input "
          f'{args.batch}x3x{args.shape[0]}x{args.shape[1]}; median of '
          f'{args.iters} interleaved rounds')
    print(_describe_limits(limits))
    print('FLOPs per step: ' + ', '.join(
        f'{mode} {value / 1e9:.2f} G' for mode, value in flops.items()) +
        (' (train = 3x forward)' if 'train' in flops else ''))
    for peer in peers:
        print('peer ' + peer['note'])
    print()
    header = ['impl', 'version', 'mode', 'precision', 'channels_last', 'with_cp',
              'compile', 'latency ms', 'img/s', 'GFLOP/s', 'of matmul',
              'peak MB', 'speed vs ref', 'memory vs ref']
    if onednn is not None:
        header.insert(header.index('of matmul') + 1, 'of oneDNN GEMM')
    table = []
    for row in rows:
        flags = [row['impl'], f"V{row['version']}", row['mode'],
                 row['precision']] + [
            'on' if row[k] else 'off'
            for k in ('channels_last', 'with_cp', 'compile')
        ]
        if 'error' in row:
            table.append(flags + [f"n/a ({row['error']})"] +
                         [''] * (len(header) - len(flags) - 1))
            continue
        figures = [
            f"{row['latency_ms']:.1f}", f"{row['img_per_s']:.1f}",
            f"{row['gflops']:.1f}", _percent(row['matmul_fraction'])
        ]
        if onednn is not None:
            figures.append(_percent(row['onednn_fraction']))
        figures.append(f"{row['peak_mb']:.0f}")
        figures += [
            f'{row[k]:.2f}x' if k in row else '-'
            for k in ('speed_vs_ref', 'memory_vs_ref')
        ]
        table.append(flags + figures)
    _print_table(header, table)
    return dict(machine=machine, arch=args.arch, batch=args.batch,
                shape=list(args.shape), flops=flops, peers=peers, rows=rows)


def _percent(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.0%}'


def _describe_limits(limits: Dict[str, object]) -> str:
    """One line: the matmul rates, oneDNN's GEMM and the copy bandwidth."""
    size = limits['matmul_size']
    line = (f'matmul rate (torch.mm, {size}x{size}, {limits["statistic"]} '
            'of the rounds): ' + ', '.join(
                f'{p} {r:.1f} GFLOP/s'
                for p, r in limits['matmul_gflops'].items()))
    if limits['onednn_fp32_matmul_gflops'] is not None:
        line += (f'; oneDNN fp32 GEMM '
                 f'{limits["onednn_fp32_matmul_gflops"]:.1f} GFLOP/s')
    return line + (f'; copy bandwidth (copy_ of {limits["copy_bytes"] // MiB}'
                   f' MiB, read + written) {limits["copy_gb_per_s"]:.1f} '
                   'GB/s')


def _add_ratios(rows: List[Dict[str, object]]) -> None:
    """speed_vs_ref = reference latency / the row's (> 1: faster);
    memory_vs_ref = the row's peak / the reference's (< 1: less), for every
    row but the reference's that has a reference twin (same version and
    options)."""
    keys = ('version', 'mode', 'precision', 'channels_last', 'with_cp',
            'compile')
    refs = {
        tuple(row[k] for k in keys): row
        for row in rows if row['impl'] == 'reference' and 'error' not in row
    }
    for row in rows:
        ref = refs.get(tuple(row[k] for k in keys))
        if row['impl'] == 'reference' or ref is None or 'error' in row:
            continue
        row['speed_vs_ref'] = ref['latency_ms'] / row['latency_ms']
        if ref['peak_mb'] > 0:
            row['memory_vs_ref'] = row['peak_mb'] / ref['peak_mb']


# ----------------------------------------------------------------- layernorm
def run_layernorm(args) -> Dict[str, object]:
    """Each way of normalising an NCHW activation over its channels, on
    NCHW and on channels-last memory: latency, effective bandwidth and the
    largest deviation from an fp64 computation."""
    from convnext_backbone.layernorm import LayerNorm2d
    from tools.lib.reference import ChannelsFirstLayerNorm
    device = _device(args.device)
    n, c, h, w = args.shape
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w, device=device) * 3 + 1
    hand = ChannelsFirstLayerNorm(c).to(device)
    ours = LayerNorm2d(c, eps=1e-6).to(device)
    weight, bias = torch.rand(c) + 0.5, torch.randn(c)
    with torch.no_grad():
        for norm in (hand, ours):
            norm.weight.copy_(weight)
            norm.bias.copy_(bias)
    exact = hand.double()(x.double())
    hand.float()
    variants = {
        'hand-written (official), NCHW': (hand, torch.contiguous_format),
        'hand-written (official), channels-last': (hand,
                                                   torch.channels_last),
        'permute + F.layer_norm, NCHW': (ours, torch.contiguous_format),
        'permute + F.layer_norm, channels-last (backbone)': (
            ours, torch.channels_last),
    }
    steps, rows = {}, []
    for mode in args.modes:
        for name, (norm, memory_format) in variants.items():
            inp = x.contiguous(memory_format=memory_format).requires_grad_(
                mode == 'train')
            with torch.no_grad():
                error = (norm(inp).double() - exact).abs().max().item()
            grad = torch.randn_like(exact, dtype=x.dtype)

            def step(norm=norm, inp=inp, grad=grad, mode=mode):
                with torch.set_grad_enabled(mode == 'train'):
                    out = norm(inp)
                if mode == 'train':
                    out.backward(grad)
                    inp.grad = None
                    norm.zero_grad(set_to_none=True)

            steps[len(rows)] = step
            rows.append(dict(variant=name, mode=mode, max_abs_error=error))
    # The device's copy bandwidth, timed in the same rounds: the limit of a
    # formulation that moves each byte once.
    copy_bytes = (args.copy_mib * MiB if args.copy_mib else
                  default_copy_bytes(device))
    steps['copy'] = copy_step(device, copy_bytes)
    times = interleaved_times(steps, device, args.iters, args.warmup)
    copy_gb_per_s = 2 * copy_bytes / limit_seconds(times['copy'],
                                                   device) / 1e9
    # bytes that must move: read x, write y (train: + read dy, write dx)
    for index, row in enumerate(rows):
        seconds = median(times[index])
        moved = x.numel() * x.element_size() * (2 if row['mode'] == 'infer'
                                                else 4)
        row['latency_us'] = seconds * 1e6
        row['gb_per_s'] = moved / seconds / 1e9
        row['copy_fraction'] = fraction(row['gb_per_s'], copy_gb_per_s)
    for row in rows:
        base = next(r for r in rows if r['mode'] == row['mode'])
        row['speed_vs_hand_nchw'] = base['latency_us'] / row['latency_us']
    machine = machine_info(device)
    machine['copy_gb_per_s'] = copy_gb_per_s
    print(f"{_describe(machine)}; LayerNorm over C of "
          f'{n}x{c}x{h}x{w}, median of {args.iters} interleaved rounds')
    print(f'copy bandwidth (copy_ of {copy_bytes // MiB} MiB, read + '
          f'written, {"best" if device.type == "cuda" else "median"} of the '
          f'rounds): {copy_gb_per_s:.1f} GB/s')
    _print_table(
        ['variant', 'mode', 'latency us', 'GB/s', 'of copy',
         'speed vs hand NCHW', 'max abs error vs fp64'],
        [[r['variant'], r['mode'], f"{r['latency_us']:.0f}",
          f"{r['gb_per_s']:.1f}", _percent(r['copy_fraction']),
          f"{r['speed_vs_hand_nchw']:.2f}x",
          f"{r['max_abs_error']:.1e}"] for r in rows])
    return dict(machine=machine, shape=list(args.shape), rows=rows)


# --------------------------------------------------------------------- model
def _first_value(node, key: str):
    return next((d[key] for d in iter_dicts(node) if key in d), None)


def synthetic_batch(scope: str, num_classes: int, batch: int, shape,
                    seed: int = 0) -> Dict[str, list]:
    """A packed data batch as a dataloader gives it: uint8 images and
    data samples with random annotations (boxes and masks for detection,
    a label map for segmentation)."""
    h, w = shape
    gen = torch.Generator().manual_seed(seed)
    if scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        torch.manual_seed(seed)
        return demo_mm_inputs(batch_size=batch, image_shapes=(3, h, w),
                              num_items=[8] * batch, num_classes=num_classes,
                              with_mask=True)
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=gen,
                                    dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(
            img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
            scale_factor=(1.0, 1.0), flip=False, img_path=None))
        sample.gt_sem_seg = PixelData(data=torch.randint(
            0, num_classes, (1, h, w), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _default_model_shape(cfg) -> tuple:
    if cfg.default_scope == 'mmdet':
        return (800, 1333)
    crop = _first_value(cfg.to_dict().get('train_pipeline', []),
                        'crop_size') or _first_value(
                            cfg.model.to_dict(), 'size')
    if crop is None:
        sys.exit('error: no crop_size in the config; pass --shape H W')
    return tuple(crop)


def mmpretrain_peer_cfg(cfg):
    """A copy of the config with mmpretrain's ConvNeXt as its backbone
    (``gap_before_final_norm=False``, as mmdet's and mmseg's own ConvNeXt
    configs use it; for a ``ConvNeXtV2`` backbone ``use_grn=True`` and no
    layer scale) and mmdet's / mmseg's own
    ``LearningRateDecayOptimizerConstructor``, which knows mmpretrain's
    parameter names, with the same decay."""
    from convnext_backbone.layer_decay import infer_num_layers
    peer = copy.deepcopy(cfg)
    ours = cfg.model.backbone
    arch = ours.get('arch', 'tiny')
    settings = resolve_arch(arch)
    if isinstance(arch, str):
        arch = preset_name(arch)
    else:  # mmpretrain names the widths 'channels'
        arch = dict(depths=list(settings['depths']),
                    channels=list(settings['dims']))
    if ours.type == 'ConvNeXtV2':
        version = dict(use_grn=True, layer_scale_init_value=0.)
    else:
        version = dict(layer_scale_init_value=ours.get(
            'layer_scale_init_value', 1e-6))
    peer.model.backbone = dict(
        type='mmpretrain.ConvNeXt', arch=arch,
        out_indices=tuple(ours.get('out_indices', (0, 1, 2, 3))),
        drop_path_rate=ours.get('drop_path_rate', 0.),
        frozen_stages=max(ours.get('frozen_stages', -1), 0),
        with_cp=ours.get('with_cp', False), gap_before_final_norm=False,
        init_cfg=None, **version)
    optim_wrapper = peer.get('optim_wrapper', {})
    if optim_wrapper.get('constructor') == \
            'ConvNeXtLayerDecayOptimizerConstructor':
        optim_wrapper.constructor = 'LearningRateDecayOptimizerConstructor'
        paramwise = optim_wrapper.paramwise_cfg
        paramwise.setdefault('decay_type', 'layer_wise')
        paramwise.setdefault('num_layers',
                             infer_num_layers(settings['depths']))
    return peer


def _share_weights(peer: torch.nn.Module, model: torch.nn.Module) -> None:
    """Give ``model`` the peer's weights: its backbone's converted with
    ``convert_to_convnext``, the rest (same module names) as they are, so
    that both compute the same (a detector's inference time depends on
    its weights: how many boxes it keeps)."""
    state_dict = {key: value for key, value in peer.state_dict().items()
                  if not key.startswith('backbone.')}
    state_dict.update({f'backbone.{key}': value for key, value in
                       peer_weights(peer.backbone).items()})
    model.load_state_dict(state_dict)


def _model_peer(cfg, model, shape, device, build) -> Dict[str, object]:
    """mmpretrain's backbone in the config's model, the same weights in
    both models and their backbones' features compared; like
    :func:`check_peer`, plus ``model`` where timed."""
    reason = peer_unavailable('mmpretrain')
    if reason is not None:
        return dict(status='unavailable', note=f'{reason}; not timed')
    peer = build(mmpretrain_peer_cfg(cfg)).to(device)
    peer.init_weights()
    try:
        _share_weights(peer, model)
    except RuntimeError as exc:
        return dict(status='refused', note=(
            'mmpretrain refused: its weights do not map onto this model '
            f'({str(exc).splitlines()[1].strip()}); not timed'))
    x = torch.randn(1, 3, *shape, device=device)
    errors = peer_feature_errors(model.backbone, peer.backbone, x,
                                 output_norms=True)
    worst = max(errors)
    if not worst <= PEER_TOLERANCE:
        return dict(status='refused', max_relative_errors=errors, note=(
            'mmpretrain refused: its backbone\'s features differ from this '
            f'ConvNeXt\'s from the same weights (max relative error '
            f'{worst:.1e} > {PEER_TOLERANCE:.0e}); not timed'))
    return dict(status='ok', max_relative_errors=errors, model=peer, note=(
        'mmpretrain (the config with backbone mmpretrain.ConvNeXt, '
        'gap_before_final_norm=False, and its scope\'s '
        'LearningRateDecayOptimizerConstructor): the same weights in both '
        'models, backbone features equal (max relative error '
        f'{worst:.1e}, fp32); timed'))


def run_model(args) -> Dict[str, object]:
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper

    from tools.lib.cfg_options import merge_cfg_options
    from tools.lib.device import adapt_to_device
    from tools.lib.errors import ConfigPrepareError
    from tools.lib.models import build_model_without_weights
    device = _device(args.device)
    if not osp.isfile(args.config):
        sys.exit(f'error: config {args.config!r} does not exist; pass a path '
                 'like configs/mask_rcnn_convnext_t.py')
    if set(args.peers) - {'mmpretrain'}:
        sys.exit('error: --peers timm: the model mode swaps the config\'s '
                 'backbone for another mmdet/mmseg backbone, and timm\'s '
                 'features_only model is not one; use --peers mmpretrain')
    cfg = Config.fromfile(args.config)
    merge_cfg_options(cfg, args.cfg_options)
    adapt_to_device(cfg, distributed=False, cuda=device.type == 'cuda')
    try:
        model = build_model_without_weights(cfg).to(device)
    except ConfigPrepareError as exc:
        sys.exit(f'error: {exc}')
    model.init_weights()  # random weights
    scope = cfg.default_scope
    shape = tuple(args.shape) if args.shape else _default_model_shape(cfg)
    batches = dict(infer=args.batch or 1,
                   train=args.batch or cfg.train_dataloader.batch_size)
    if scope == 'mmseg' and 'train' in args.modes and batches['train'] < 2:
        sys.exit(f"error: --batch {batches['train']}: a segmentor train "
                 'step needs 2 or '
                 "more images (UperNet's pooling module batch-normalises 1x1 "
                 'maps); pass --batch 2 or --modes infer')
    num_classes = _first_value(cfg.model.to_dict(), 'num_classes')
    models = dict(convnext=(model, cfg))
    peers = []
    if args.peers:
        peer = dict(peer='mmpretrain', **_model_peer(
            cfg, model, shape, device, build_model_without_weights))
        if 'model' in peer:
            models['mmpretrain'] = (peer.pop('model'),
                                    mmpretrain_peer_cfg(cfg))
        peers.append(peer)

    result = dict(config=osp.basename(args.config), scope=scope,
                  shape=list(shape), batch=batches,
                  machine=machine_info(device))
    figures = {name: {} for name in models}
    if 'infer' in args.modes:
        data = synthetic_batch(scope, num_classes, batches['infer'], shape)
        steps = {}
        for name, (net, _) in models.items():
            net.eval()

            def infer(net=net):
                with torch.no_grad():
                    net.test_step(data)

            steps[name] = infer
        times = interleaved_times(steps, device, args.iters, args.warmup)
        for name in models:
            figures[name]['infer_latency_ms'] = median(times[name]) * 1e3
            figures[name]['infer_img_per_s'] = (batches['infer'] /
                                                median(times[name]))
    if 'train' in args.modes:
        data = synthetic_batch(scope, num_classes, batches['train'], shape)
        steps = {}
        for name, (net, net_cfg) in models.items():
            net.train()
            optim_wrapper = build_optim_wrapper(net, net_cfg.optim_wrapper)

            def train(net=net, optim_wrapper=optim_wrapper):
                net.train_step(data, optim_wrapper)

            steps[name] = train
        times = interleaved_times(steps, device, args.iters, args.warmup)
        for name in models:
            figures[name]['train_step_s'] = median(times[name])
            figures[name]['train_peak_mb'] = peak_step_memory(
                steps[name], device) / MiB
    result.update(figures['convnext'])
    for peer in peers:
        peer.update(figures.get(peer['peer'], {}))
    if peers:
        result['peers'] = peers

    machine = result['machine']
    print(f'{_describe(machine)}; random weights, synthetic data')
    for peer in peers:
        print('peer ' + peer['note'])
    _print_table(
        ['config', 'backbone', 'input (H, W)', 'batch (infer/train)',
         'infer img/s', 'infer latency ms', 'train step s', 'train peak MB'],
        [[result['config'], name, f'({shape[0]}, {shape[1]})',
          f"{batches['infer']}/{batches['train']}"] + [
            f'{values[k]:{fmt}}' if k in values else '-'
            for k, fmt in (('infer_img_per_s', '.2f'),
                           ('infer_latency_ms', '.0f'), ('train_step_s',
                                                         '.2f'),
                           ('train_peak_mb', '.0f'))
        ] for name, values in figures.items()])
    return result


def main(argv=None) -> Optional[Dict[str, object]]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = dict(backbone=run_backbone, layernorm=run_layernorm,
                  model=run_model)[args.command](args)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
        print(f'wrote {args.json}')
    return result


if __name__ == '__main__':
    main()
