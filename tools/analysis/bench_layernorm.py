"""The ``layernorm`` mode of ``tools/analysis/benchmark.py``: each way of
normalising an NCHW activation over its channels, on NCHW and on
channels-last memory (how the backbone's choice was made)."""
import argparse
from typing import Dict

import torch

from convnext_backbone.layernorm import LayerNorm2d
from tools.lib.measure import (MiB, copy_step, default_copy_bytes,
                               describe_machine, fraction, interleaved_times,
                               limit_seconds, machine_info, markdown_table,
                               median, percent)
from tools.lib.reference import ChannelsFirstLayerNorm


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The mode's options, added to its sub-command's ``parser``."""
    parser.add_argument('--shape', type=int, nargs=4,
                        default=(1, 96, 128, 128),
                        metavar=('N', 'C', 'H', 'W'),
                        help='activation shape (default: ConvNeXt-T stage 0 '
                        'at 512x512)')
    parser.add_argument('--modes', nargs='+', choices=('infer', 'train'),
                        default=('infer', 'train'))


def run(args: argparse.Namespace,
        device: torch.device) -> Dict[str, object]:
    """Each way of normalising an NCHW activation over its channels, on
    NCHW and on channels-last memory: latency, effective bandwidth and the
    largest deviation from an fp64 computation."""
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
    print(f"{describe_machine(machine)}; LayerNorm over C of "
          f'{n}x{c}x{h}x{w}, median of {args.iters} interleaved rounds')
    print(f'copy bandwidth (copy_ of {copy_bytes // MiB} MiB, read + '
          f'written, {"best" if device.type == "cuda" else "median"} of the '
          f'rounds): {copy_gb_per_s:.1f} GB/s')
    print(markdown_table(
        ['variant', 'mode', 'latency us', 'GB/s', 'of copy',
         'speed vs hand NCHW', 'max abs error vs fp64'],
        [[r['variant'], r['mode'], f"{r['latency_us']:.0f}",
          f"{r['gb_per_s']:.1f}", percent(r['copy_fraction']),
          f"{r['speed_vs_hand_nchw']:.2f}x",
          f"{r['max_abs_error']:.1e}"] for r in rows]))
    return dict(machine=machine, shape=list(args.shape), rows=rows)
