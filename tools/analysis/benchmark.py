"""Speed and memory of the ConvNeXt backbone and of whole models.

Backbone: every option combination asked for, each measured for this
package's ``ConvNeXt`` and for the plain reference formulation
(:mod:`tools.lib.reference`, the official code's way) in the same
run, so every figure is also a ratio; and the machine's own matmul rate, so
GFLOP/s are also a fraction of what the machine can do::

    python tools/analysis/benchmark.py backbone --arch tiny --shape 512 512 \\
        --batch 1 --modes infer
    python tools/analysis/benchmark.py backbone --modes train --with-cp off on
    python tools/analysis/benchmark.py backbone --device cuda --batch 64 \\
        --precisions fp16 --channels-last on off --compile off on

Whole model from a config (random weights, synthetic images and
annotations; the train step is the config's own ``train_step`` with its
optimizer wrapper)::

    python tools/analysis/benchmark.py model \\
        configs/mask_rcnn_convnext_t.py --shape 800 1333

LayerNorm over channels, each formulation on NCHW and channels-last memory
(how the backbone's choice was made)::

    python tools/analysis/benchmark.py layernorm --shape 1 96 128 128

Prints markdown tables; ``--json PATH`` also writes every figure. Figures
are defined in :mod:`tools.lib.measure`.
"""
import argparse
import json
import os.path as osp
import sys
import traceback
from typing import Dict, List, Optional

import torch
from mmengine.config import DictAction

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from convnext_backbone import ConvNeXt  # noqa: E402
from convnext_backbone.presets import resolve_arch  # noqa: E402
from tools.lib.cfg_walk import iter_dicts  # noqa: E402
from tools.lib.measure import (  # noqa: E402
    count_flops, interleaved_times, machine_info, matmul_flops, matmul_step,
    median, onednn_matmul_step, peak_step_memory, time_step)
from tools.lib.reference import ReferenceConvNeXt  # noqa: E402

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

    bb = sub.add_parser('backbone', parents=[common],
                        help='ConvNeXt vs the reference formulation')
    bb.add_argument('--arch', default='tiny')
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
    bb.add_argument('--matmul-size', type=int, default=2048)

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
    return device


def _describe(machine: Dict[str, object]) -> str:
    return (f"{machine['name']} ({machine['device']}, {machine['threads']} "
            f"threads, torch {machine['torch']})")


def _print_table(header: List[str], rows: List[List[str]]) -> None:
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for row in rows:
        print('| ' + ' | '.join(row) + ' |')


# ------------------------------------------------------------------ backbone
def _build_backbone(impl: str, arch: str, with_cp: bool, channels_last: bool,
                    state_dict: Dict[str, torch.Tensor],
                    device: torch.device) -> torch.nn.Module:
    if impl == 'convnext':
        model = ConvNeXt(arch, with_cp=with_cp, channels_last=channels_last)
        model.load_state_dict(state_dict, strict=False)
        return model.to(device)
    # The reference gets what a user of the official code would do: the
    # model and the input converted to channels-last.
    model = ReferenceConvNeXt(arch, with_cp=with_cp)
    model.load_state_dict(state_dict)
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


def _backbone_case(args, device, impl, mode, precision, channels_last,
                   with_cp, compiled, state_dict):
    """A row's options and its step, run once (so that compilation, and
    what cannot run here, shows now); or the row with an ``error``."""
    row = dict(impl=impl, mode=mode, precision=precision,
               channels_last=channels_last, with_cp=with_cp,
               compile=compiled)
    try:
        model = _build_backbone(impl, args.arch, with_cp, channels_last,
                                state_dict, device)
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
    try:
        resolve_arch(args.arch)
    except ValueError as exc:
        sys.exit(f'error: --arch: {exc}')
    torch.manual_seed(0)
    # One set of weights for both formulations (layer scale 1 so that every
    # branch matters, as after training).
    state_dict = ReferenceConvNeXt(
        args.arch, layer_scale_init_value=1.0).state_dict()

    # FLOPs of the network's forward, counted on the plain reference (fused
    # kernels are invisible to the counter). A training step counts 3x: the
    # backward of a conv / linear layer is two products (input and weight
    # gradients) of the forward's cost. torch's counter is not used for the
    # backward: it ignores groups in convolution_backward (torch 2.13
    # counts a 64-channel depthwise 7x7 backward 65x the forward).
    # with_cp's recomputation is not counted: it is not work done for the
    # result.
    ref = _build_backbone('reference', args.arch, False, False, state_dict,
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
                        for impl in args.impls:
                            row, step = _backbone_case(
                                args, device, impl, mode, precision,
                                channels_last, with_cp, compiled, state_dict)
                            if step is not None:
                                steps[len(rows)] = step
                            rows.append(row)
    # The machine's matmul rates, timed in the same rounds as the models.
    precisions = ['fp32'] + [p for p in args.precisions if p != 'fp32']
    for precision in precisions:
        steps[f'mm-{precision}'] = matmul_step(device, PRECISIONS[precision],
                                               args.matmul_size)
    onednn_step = onednn_matmul_step(args.matmul_size) \
        if device.type == 'cpu' else None
    if onednn_step is not None:
        steps['mm-onednn'] = onednn_step
    times = interleaved_times(steps, device, args.iters, args.warmup)
    mm_flops = matmul_flops(args.matmul_size)
    rates = {p: mm_flops / median(times[f'mm-{p}']) / 1e9
             for p in precisions}
    onednn = (mm_flops / median(times['mm-onednn']) / 1e9
              if onednn_step is not None else None)
    for index, row in enumerate(rows):
        if index not in steps:
            continue
        seconds = median(times[index])
        row['latency_ms'] = seconds * 1e3
        row['img_per_s'] = args.batch / seconds
        row['gflops'] = flops[row['mode']] / seconds / 1e9
        row['matmul_fraction'] = row['gflops'] / rates[row['precision']]
        if onednn is not None:
            row['onednn_fraction'] = row['gflops'] / onednn
        row['peak_mb'] = peak_step_memory(steps[index], device) / MiB
    _add_ratios(rows)
    machine = machine_info(device)
    machine['matmul_gflops'] = rates
    machine['onednn_fp32_matmul_gflops'] = onednn

    print(f"{_describe(machine)}; ConvNeXt-{args.arch}, input "
          f'{args.batch}x3x{args.shape[0]}x{args.shape[1]}; median of '
          f'{args.iters} interleaved rounds')
    print('matmul rate (torch.mm, {0}x{0}): '.format(args.matmul_size) +
          ', '.join(f'{p} {r:.1f} GFLOP/s' for p, r in rates.items()) +
          (f'; oneDNN fp32 GEMM {onednn:.1f} GFLOP/s'
           if onednn is not None else ''))
    print('FLOPs per step: ' + ', '.join(
        f'{mode} {value / 1e9:.2f} G' for mode, value in flops.items()) +
        (' (train = 3x forward)' if 'train' in flops else ''))
    print()
    header = ['impl', 'mode', 'precision', 'channels_last', 'with_cp',
              'compile', 'latency ms', 'img/s', 'GFLOP/s', 'of matmul',
              'peak MB', 'speed vs ref', 'memory vs ref']
    if onednn is not None:
        header.insert(10, 'of oneDNN GEMM')
    table = []
    for row in rows:
        flags = [row['impl'], row['mode'], row['precision']] + [
            'on' if row[k] else 'off'
            for k in ('channels_last', 'with_cp', 'compile')
        ]
        if 'error' in row:
            table.append(flags + [f"n/a ({row['error']})"] +
                         [''] * (len(header) - len(flags) - 1))
            continue
        figures = [
            f"{row['latency_ms']:.1f}", f"{row['img_per_s']:.1f}",
            f"{row['gflops']:.1f}", f"{row['matmul_fraction']:.0%}"
        ]
        if onednn is not None:
            figures.append(f"{row['onednn_fraction']:.0%}")
        figures.append(f"{row['peak_mb']:.0f}")
        figures += [
            f'{row[k]:.2f}x' if k in row else '-'
            for k in ('speed_vs_ref', 'memory_vs_ref')
        ]
        table.append(flags + figures)
    _print_table(header, table)
    return dict(machine=machine, arch=args.arch, batch=args.batch,
                shape=list(args.shape), flops=flops, rows=rows)


def _add_ratios(rows: List[Dict[str, object]]) -> None:
    """speed_vs_ref = reference latency / ours (> 1: faster); memory_vs_ref
    = our peak / the reference's (< 1: less), for rows with a twin."""
    keys = ('mode', 'precision', 'channels_last', 'with_cp', 'compile')
    refs = {
        tuple(row[k] for k in keys): row
        for row in rows if row['impl'] == 'reference' and 'error' not in row
    }
    for row in rows:
        ref = refs.get(tuple(row[k] for k in keys))
        if row['impl'] != 'convnext' or ref is None or 'error' in row:
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
    times = interleaved_times(steps, device, args.iters, args.warmup)
    # bytes that must move: read x, write y (train: + read dy, write dx)
    for index, row in enumerate(rows):
        seconds = median(times[index])
        moved = x.numel() * x.element_size() * (2 if row['mode'] == 'infer'
                                                else 4)
        row['latency_us'] = seconds * 1e6
        row['gb_per_s'] = moved / seconds / 1e9
    for row in rows:
        base = next(r for r in rows if r['mode'] == row['mode'])
        row['speed_vs_hand_nchw'] = base['latency_us'] / row['latency_us']
    machine = machine_info(device)
    print(f"{_describe(machine)}; LayerNorm over C of "
          f'{n}x{c}x{h}x{w}, median of {args.iters} interleaved rounds')
    _print_table(
        ['variant', 'mode', 'latency us', 'GB/s', 'speed vs hand NCHW',
         'max abs error vs fp64'],
        [[r['variant'], r['mode'], f"{r['latency_us']:.0f}",
          f"{r['gb_per_s']:.1f}", f"{r['speed_vs_hand_nchw']:.2f}x",
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

    result = dict(config=osp.basename(args.config), scope=scope,
                  shape=list(shape), batch=batches,
                  machine=machine_info(device))
    if 'infer' in args.modes:
        model.eval()
        data = synthetic_batch(scope, num_classes, batches['infer'], shape)

        def infer():
            with torch.no_grad():
                model.test_step(data)

        times = time_step(infer, device, args.iters, args.warmup)
        result['infer_latency_ms'] = median(times) * 1e3
        result['infer_img_per_s'] = batches['infer'] / median(times)
    if 'train' in args.modes:
        model.train()
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        data = synthetic_batch(scope, num_classes, batches['train'], shape)

        def train():
            model.train_step(data, optim_wrapper)

        times = time_step(train, device, args.iters, args.warmup)
        result['train_step_s'] = median(times)
        result['train_peak_mb'] = peak_step_memory(train, device) / MiB

    machine = result['machine']
    print(f'{_describe(machine)}; random weights, synthetic data')
    _print_table(
        ['config', 'input (H, W)', 'batch (infer/train)', 'infer img/s',
         'infer latency ms', 'train step s', 'train peak MB'],
        [[result['config'], f'({shape[0]}, {shape[1]})',
          f"{batches['infer']}/{batches['train']}"] + [
            f'{result[k]:{fmt}}' if k in result else '-'
            for k, fmt in (('infer_img_per_s', '.2f'),
                           ('infer_latency_ms', '.0f'), ('train_step_s',
                                                         '.2f'),
                           ('train_peak_mb', '.0f'))
        ]])
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
