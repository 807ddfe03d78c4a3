"""The ``conv`` mode of ``tools/analysis/benchmark.py``: one convolution of
a head, run every way PyTorch offers on CPU and by onnxruntime, against the
machine's GEMM rate in the same rounds (what keeps a whole model's exact
fp32 setting where it is: docs/inference_speed.md).

The default is UperNet-T's ``fpn_bottleneck`` at 512x512: a 3x3 conv from
the 4 x 512 concatenated levels to 512 channels at 128 x 128.
"""
import argparse
import copy
import tempfile
from typing import Callable, Dict

import torch
import torch.nn as nn

from tools.lib.measure import (describe_machine, fraction, interleaved_times,
                               limit_seconds, machine_info, markdown_table,
                               matmul_flops, matmul_step, median,
                               onednn_matmul_step, percent)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The mode's options, added to its sub-command's ``parser``."""
    parser.add_argument('--shape', type=int, nargs=4,
                        default=(1, 2048, 128, 128),
                        metavar=('N', 'C', 'H', 'W'),
                        help='input shape (default: UperNet-T fpn_bottleneck '
                        'at 512x512)')
    parser.add_argument('--out-channels', type=int, default=512)
    parser.add_argument('--kernel', type=int, default=3)
    parser.add_argument('--onnxruntime', action='store_true',
                        help='also the conv exported to ONNX, in '
                        'onnxruntime')


def _prepacked(conv: nn.Conv2d, x: torch.Tensor) -> Callable[[], object]:
    """The weights reordered once into oneDNN's blocked layout, the conv
    called through ``mkldnn._convolution_pointwise`` (what inductor's
    ``freezing`` emits for a CPU conv)."""
    ops = torch.ops.mkldnn
    weight = ops._reorder_convolution_weight(
        conv.weight.detach(), list(conv.padding), list(conv.stride),
        list(conv.dilation), conv.groups, list(x.shape))

    def step():
        return ops._convolution_pointwise(
            x, weight, conv.bias, list(conv.padding), list(conv.stride),
            list(conv.dilation), conv.groups, 'none', [], '')

    return step


def _onnxruntime(conv: nn.Conv2d, x: torch.Tensor,
                 threads: int) -> Callable[[], object]:
    import onnxruntime as ort
    path = tempfile.mkdtemp(prefix='bench_conv_') + '/conv.onnx'
    torch.onnx.export(conv, (x, ), path, input_names=['x'], opset_version=17,
                      dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options,
                                   providers=['CPUExecutionProvider'])
    array = x.contiguous().numpy()
    return lambda: session.run(None, {'x': array})


def run(args: argparse.Namespace,
        device: torch.device) -> Dict[str, object]:
    """Milliseconds, GFLOP/s and the fraction of the GEMM rate of each way
    of running the conv, and the largest difference from NCHW's output."""
    if device.type != 'cpu':
        raise SystemExit('error: the conv mode compares CPU kernels; use '
                         '--device cpu')
    n, c, h, w = args.shape
    k = args.kernel
    torch.manual_seed(0)
    conv = nn.Conv2d(c, args.out_channels, k, padding=k // 2).eval()
    x = torch.randn(n, c, h, w)
    flops = 2 * n * args.out_channels * h * w * c * k * k
    cl = x.contiguous(memory_format=torch.channels_last)
    conv_cl = copy.deepcopy(conv).to(memory_format=torch.channels_last)
    variants: Dict[str, Callable[[], object]] = {
        'torch NCHW': lambda: conv(x),
        'torch channels-last': lambda: conv_cl(cl),
    }
    if hasattr(torch.ops.mkldnn, '_reorder_convolution_weight'):
        variants['torch, oneDNN weights prepacked (channels-last)'] = \
            _prepacked(conv, cl)
    if args.onnxruntime:
        variants['onnxruntime'] = _onnxruntime(conv, x,
                                               torch.get_num_threads())
    with torch.no_grad():
        reference = conv(x)
        errors = {}
        for name, step in variants.items():
            out = step()
            out = torch.from_numpy(out[0]) if isinstance(out, list) else out
            errors[name] = ((out - reference).abs().max() /
                            reference.abs().max()).item()
    size = 2048
    steps = dict(variants)
    steps['mm (torch.mm, MKL)'] = matmul_step(device, torch.float32, size)
    onednn = onednn_matmul_step(size)
    if onednn is not None:
        steps['mm (oneDNN)'] = onednn
    with torch.no_grad():
        times = interleaved_times(steps, device, args.iters, args.warmup)
    gemm = max(matmul_flops(size) / limit_seconds(times[name], device) / 1e9
               for name in steps if name.startswith('mm'))
    rows = []
    for name in variants:
        seconds = median(times[name])
        gflops = flops / seconds / 1e9
        rows.append(dict(variant=name, ms=seconds * 1e3, gflops=gflops,
                         gemm_fraction=fraction(gflops, gemm),
                         max_rel_diff=errors[name]))
    machine = machine_info(device)
    print(f'{describe_machine(machine)}; conv {c}->{args.out_channels} '
          f'{k}x{k} on {n}x{c}x{h}x{w} ({flops / 1e9:.0f} GFLOP), median of '
          f'{args.iters} interleaved rounds; GEMM rate (fp32 {size}^2, the '
          f'faster of MKL and oneDNN): {gemm:.0f} GFLOP/s')
    print(markdown_table(
        ['variant', 'ms', 'GFLOP/s', 'of GEMM rate', 'max rel. diff'],
        [[r['variant'], f"{r['ms']:.0f}", f"{r['gflops']:.0f}",
          percent(r['gemm_fraction']), f"{r['max_rel_diff']:.1e}"]
         for r in rows]))
    return dict(machine=machine, shape=list(args.shape),
                out_channels=args.out_channels, kernel=k, gflop=flops / 1e9,
                gemm_gflops=gemm, rows=rows)
