"""Throughput and peak memory of the ConvNeXt backbone (forward, or a
training step), for comparing presets and options (``with_cp``,
``channels_last``, AMP) on one machine.

    python tools/analysis/benchmark_backbone.py --arch tiny --shape 224 224
    python tools/analysis/benchmark_backbone.py --arch tiny --train --with-cp
    python tools/analysis/benchmark_backbone.py --device cuda --amp --channels-last

Prints one markdown table row per run. Peak memory is CUDA's
``max_memory_allocated`` on GPU, and the growth of the process's peak RSS on
CPU (coarse: it only grows, so run one configuration per process when
comparing memory on CPU). The paper's figure for orientation: ConvNeXt-T
classifies 1943.5 img/s at 224 px on an A100 (AMP, batch 64, channels last).
"""
import argparse
import os.path as osp
import resource
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))

from convnext_backbone import ConvNeXt  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', default='tiny')
    parser.add_argument('--shape', type=int, nargs=2, default=(224, 224),
                        metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--train', action='store_true',
                        help='time forward + backward instead of inference')
    parser.add_argument('--with-cp', action='store_true')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--amp', action='store_true',
                        help='autocast (fp16 on CUDA, bf16 on CPU)')
    return parser.parse_args(argv)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def main(argv=None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    model = ConvNeXt(args.arch, with_cp=args.with_cp,
                     channels_last=args.channels_last).to(device)
    model.train(args.train)
    x = torch.randn(args.batch, 3, *args.shape, device=device,
                    requires_grad=False)
    dtype = torch.float16 if device.type == 'cuda' else torch.bfloat16
    base_memory = peak_memory_mb(device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=args.amp), \
                torch.set_grad_enabled(args.train):
            outs = model(x)
        if args.train:
            sum(o.float().mean() for o in outs).backward()
            model.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(args.iters):
        step()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    memory = peak_memory_mb(device) - (base_memory if device.type == 'cpu'
                                       else 0)
    mode = 'train' if args.train else 'infer'
    options = ','.join(name for name, on in (
        ('with_cp', args.with_cp), ('channels_last', args.channels_last),
        ('amp', args.amp)) if on) or '-'
    print('| arch | mode | options | device | input | batch | img/s | '
          'peak mem (MB) |')
    print('|---|---|---|---|---|---|---|---|')
    print(f'| {args.arch} | {mode} | {options} | {args.device} '
          f'(threads {torch.get_num_threads()}) | {args.shape[0]}x'
          f'{args.shape[1]} | {args.batch} | '
          f'{args.batch * args.iters / seconds:.1f} | {memory:.0f} |')


if __name__ == '__main__':
    main()
