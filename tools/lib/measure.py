"""Measurement primitives of ``tools/analysis/benchmark.py``.

One definition of each figure on CPU and CUDA:

- latency: wall time of one step, median over timed iterations after
  warm-up (CUDA synchronised around each);
- peak memory: the most tensor memory allocated during one step above what
  was allocated before it. CUDA reads its allocator's peak. The CPU
  allocator keeps no peak, so on CPU the step runs once more under torch's
  profiler with ``profile_memory=True``, whose memory events carry the
  allocator's running total (peak RSS, the alternative, mostly measures
  glibc's caching and fragmentation);
- FLOPs: ``torch.utils.flop_counter`` (one multiply-add = 2 FLOPs) of the
  nominal network's forward; it cannot see fused private kernels, so
  callers count a plain formulation of the same network;
- the machine's matmul rate: ``torch.mm`` of two square matrices.
"""
import json
import os.path as osp
import statistics
import tempfile
import time
from typing import Callable, Dict, Hashable, List, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_step(step: Callable[[], object], device: torch.device, iters: int,
              warmup: int) -> List[float]:
    """Seconds of each of ``iters`` calls of ``step`` after ``warmup``."""
    return interleaved_times({'step': step}, device, iters, warmup)['step']


def interleaved_times(steps: Dict[Hashable, Callable[[], object]],
                      device: torch.device, iters: int,
                      warmup: int) -> Dict[str, List[float]]:
    """Seconds of each step, timed round-robin: every round runs each step
    once, so a drift of the machine's speed (other load, clocks, a cold
    heap) spreads over all of them instead of biasing the ones run first.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    synchronize(device)
    times: Dict[Hashable, List[float]] = {name: [] for name in steps}
    for _ in range(iters):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def median(values: List[float]) -> float:
    return statistics.median(values)


def peak_step_memory(step: Callable[[], object], device: torch.device) -> int:
    """Peak bytes of tensor memory allocated by one call of ``step`` beyond
    what was allocated when it started."""
    if device.type == 'cuda':
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU],
            profile_memory=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'trace.json')
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)['traceEvents']
    totals = [
        event['args']['Total Allocated'] for event in events
        if event.get('name') == '[memory]'
        and 'Total Allocated' in event.get('args', {})
    ]
    return max(totals, default=0)


def count_flops(step: Callable[[], object]) -> int:
    """FLOPs (2 per multiply-add) of the convolutions and matrix multiplies
    one call of ``step`` dispatches (forward only: torch 2.13's counter
    ignores groups in ``convolution_backward``)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def matmul_step(device: torch.device, dtype: torch.dtype,
                size: int = 2048) -> Callable[[], object]:
    """``torch.mm`` of two ``size`` x ``size`` matrices; it does
    ``matmul_flops(size)`` FLOPs."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    return lambda: torch.mm(a, b)


def onednn_matmul_step(size: int = 2048) -> Optional[Callable[[], object]]:
    """The same product by oneDNN's fp32 GEMM (the kernel of the backbone's
    fused CPU path), or None without it.

    ``torch.mm`` on CPU is MKL's GEMM, which is not always the fastest the
    machine has (MKL takes slower code paths on non-Intel CPUs), so both
    rates are worth reporting.
    """
    from convnext_backbone.blocks import onednn_fusion_available
    if not onednn_fusion_available():
        return None
    a, b = torch.randn(size, size), torch.randn(size, size)
    op = torch.ops.mkldnn._linear_pointwise

    def step():
        with torch.no_grad():
            return op(a, b, None, 'none', [], '')

    return step


def matmul_flops(size: int) -> int:
    return 2 * size**3


def machine_info(device: torch.device) -> Dict[str, object]:
    """What the figures were measured on."""
    info: Dict[str, object] = dict(
        device=str(device), torch=torch.__version__,
        threads=torch.get_num_threads())
    if device.type == 'cuda':
        info['name'] = torch.cuda.get_device_name(device)
    else:
        import platform
        info['name'] = platform.processor() or platform.machine()
        try:
            with open('/proc/cpuinfo') as f:
                for line in f:
                    if line.startswith('model name'):
                        info['name'] = line.split(':', 1)[1].strip()
                        break
        except OSError:
            pass
    return info
