"""The ``backbone`` mode of ``tools/analysis/benchmark.py``: this package's
ConvNeXt (and ConvNeXtV2) beside the plain reference formulation and the
peers, in every option combination asked for, with the device's limits
timed in the same rounds."""
import argparse
import sys
import traceback
from typing import Dict, List

import torch

from convnext_backbone.presets import preset_name, resolve_arch
from tools.analysis.bench_peers import (CONVNEXT_CLASSES, backbone_label,
                                        build_peer, check_peer, peer_names)
from tools.lib.measure import (MiB, count_flops, default_copy_bytes,
                               default_matmul_size, describe_machine,
                               fraction, interleaved_times, limit_rates,
                               limit_steps, machine_info, markdown_table,
                               median, peak_step_memory, percent)
from tools.lib.reference import ReferenceConvNeXt, ReferenceConvNeXtV2

PRECISIONS = {
    'fp32': torch.float32,
    'bf16': torch.bfloat16,
    'fp16': torch.float16
}
ON_OFF = {'on': True, 'off': False}


def _on_off(value: str) -> bool:
    if value not in ON_OFF:
        raise argparse.ArgumentTypeError(
            f"{value!r}: use 'on' or 'off'")
    return ON_OFF[value]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The mode's options, added to its sub-command's ``parser``."""
    parser.add_argument('--arch', default='tiny')
    parser.add_argument('--versions', nargs='+', type=int, choices=(1, 2),
                        default=(1, ),
                        help='ConvNeXt (1) and/or ConvNeXtV2 (2), same '
                        'preset')
    parser.add_argument('--shape', type=int, nargs=2, default=(224, 224),
                        metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--modes', nargs='+', choices=('infer', 'train'),
                        default=('infer', 'train'))
    parser.add_argument('--precisions', nargs='+', choices=tuple(PRECISIONS),
                        default=('fp32', ),
                        help='fp32, or autocast to bf16 / fp16')
    parser.add_argument('--channels-last', nargs='+', type=_on_off,
                        default=(True, ), metavar='on|off')
    parser.add_argument('--with-cp', nargs='+', type=_on_off,
                        default=(False, ), metavar='on|off',
                        help='gradient checkpointing (train rows only)')
    parser.add_argument('--compile', nargs='+', type=_on_off,
                        default=(False, ), metavar='on|off',
                        help='torch.compile the model')
    parser.add_argument('--impls', nargs='+',
                        choices=('convnext', 'reference'),
                        default=('convnext', 'reference'))
    parser.add_argument('--peers', nargs='+', choices=peer_names(),
                        default=(),
                        help='also time these implementations of the same '
                        'backbone, each first checked to give the same '
                        'features from the same weights')
    parser.add_argument('--matmul-size', type=int,
                        help='side of the torch.mm limit (default: 8192 on '
                        'CUDA, 2048 on CPU)')


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


def run(args: argparse.Namespace,
        device: torch.device) -> Dict[str, object]:
    """Time every option combination of ``args`` (see
    :func:`add_arguments`) on ``device``; print the table and return every
    figure."""
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

    labels = ', '.join(backbone_label(args.arch, v) for v in args.versions)
    print(f'{describe_machine(machine)}; {labels}, input '
          f'{args.batch}x3x{args.shape[0]}x{args.shape[1]}; median of '
          f'{args.iters} interleaved rounds')
    print(_describe_limits(limits))
    print('FLOPs per step: ' + ', '.join(
        f'{mode} {value / 1e9:.2f} G' for mode, value in flops.items()) +
        (' (train = 3x forward)' if 'train' in flops else ''))
    for peer in peers:
        print('peer ' + peer['note'])
    print()
    header = ['impl', 'version', 'mode', 'precision', 'channels_last',
              'with_cp', 'compile', 'latency ms', 'img/s', 'GFLOP/s',
              'of matmul', 'peak MB', 'speed vs ref', 'memory vs ref']
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
            f"{row['gflops']:.1f}", percent(row['matmul_fraction'])
        ]
        if onednn is not None:
            figures.append(percent(row['onednn_fraction']))
        figures.append(f"{row['peak_mb']:.0f}")
        figures += [
            f'{row[k]:.2f}x' if k in row else '-'
            for k in ('speed_vs_ref', 'memory_vs_ref')
        ]
        table.append(flags + figures)
    print(markdown_table(header, table))
    return dict(machine=machine, arch=args.arch, batch=args.batch,
                shape=list(args.shape), flops=flops, peers=peers, rows=rows)


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
