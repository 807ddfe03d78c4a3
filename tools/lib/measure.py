"""Measurement primitives of ``tools/analysis/benchmark.py``, and the
lines and tables its modes print them in.

One definition of each figure on CPU and CUDA:

- latency: time of one step, median over timed rounds after warm-up: on
  CPU wall time (``time.perf_counter``); on CUDA the device time between
  two CUDA events around the step, with one synchronisation per round
  instead of one per step (a wait after every step adds the host's launch
  gap to each and understates what the device does);
- peak memory: the most tensor memory allocated during one step above what
  was allocated before it. CUDA reads its allocator's peak. The CPU
  allocator keeps no peak, so on CPU the step runs once more under torch's
  profiler with ``profile_memory=True``, whose memory events carry the
  allocator's running total (peak RSS, the alternative, mostly measures
  glibc's caching and fragmentation);
- FLOPs: ``torch.utils.flop_counter`` (one multiply-add = 2 FLOPs) of the
  nominal network's forward; it cannot see fused private kernels, so
  callers count a plain formulation of the same network;
- the device's limits, timed in the same rounds as the rows they bound:
  ``torch.mm`` of two square matrices per precision (8192 on CUDA, 2048 on
  CPU, where oneDNN's fp32 GEMM is timed too) and the bandwidth of a large
  device-to-device ``copy_`` (bytes read + written). On CUDA a limit is the
  best of the rounds (the fastest the device did it); on CPU, whose speed
  drifts with the other load of a shared machine, the median, as the rows.
"""
import json
import os.path as osp
import statistics
import tempfile
import time
from typing import Callable, Dict, Hashable, List, Optional, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

MiB = 2**20


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def interleaved_times(steps: Dict[Hashable, Callable[[], object]],
                      device: torch.device, iters: int,
                      warmup: int) -> Dict[Hashable, List[float]]:
    """Seconds of each step, timed round-robin: every round runs each step
    once, so a drift of the machine's speed (other load, clocks, a cold
    heap) spreads over all of them instead of biasing the ones run first.
    The clock is :func:`timer_for` the device's.
    """
    return timer_for(device)(steps, device, iters, warmup)


def timer_for(device: torch.device) -> Callable:
    """:func:`cuda_event_times` on CUDA, :func:`wall_times` elsewhere."""
    return cuda_event_times if device.type == 'cuda' else wall_times


def wall_times(steps: Dict[Hashable, Callable[[], object]],
               device: torch.device, iters: int,
               warmup: int) -> Dict[Hashable, List[float]]:
    """``time.perf_counter`` around each step, the steps in the same order
    every round."""
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


def cuda_event_times(steps: Dict[Hashable, Callable[[], object]],
                     device: torch.device, iters: int, warmup: int,
                     cuda=torch.cuda) -> Dict[Hashable, List[float]]:
    """Device seconds of each step between two CUDA events, one host
    synchronisation per round.

    The steps of a round queue back to back; only the first starts on an
    idle device, so the order is rotated each round to spread that over
    all steps.

    Args:
        cuda: Provides ``Event(enable_timing=True)`` (``record()``,
            ``elapsed_time(end)`` in ms) and ``synchronize(device)``.
            Defaults to ``torch.cuda``; tests pass a stand-in.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    cuda.synchronize(device)
    names = list(steps)
    times: Dict[Hashable, List[float]] = {name: [] for name in names}
    for round_index in range(iters):
        events = []
        for name in rotated(names, round_index):
            start = cuda.Event(enable_timing=True)
            end = cuda.Event(enable_timing=True)
            start.record()
            steps[name]()
            end.record()
            events.append((name, start, end))
        cuda.synchronize(device)
        for name, start, end in events:
            times[name].append(start.elapsed_time(end) / 1e3)
    return times


def rotated(items: Sequence, offset: int) -> list:
    """``items`` starting at ``offset`` (modulo its length), wrapping."""
    offset %= max(len(items), 1)
    return list(items[offset:]) + list(items[:offset])


def limit_seconds(times: List[float], device: torch.device) -> float:
    """Seconds of a limit's step (matmul, copy): the best of the rounds on
    CUDA, the median on CPU (see the module's docstring)."""
    return min(times) if device.type == 'cuda' else median(times)


def fraction(value: Optional[float],
             limit: Optional[float]) -> Optional[float]:
    """``value / limit``, or None when either is unknown (or the limit 0)."""
    if value is None or not limit:
        return None
    return value / limit


def max_relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max |actual - expected| / max |expected|`` (in float64)."""
    if actual.shape != expected.shape:
        raise ValueError(f'shapes differ: {tuple(actual.shape)} vs '
                         f'{tuple(expected.shape)}')
    expected = expected.detach().double()
    diff = (actual.detach().double() - expected).abs().max()
    return (diff / expected.abs().max().clamp_min(1e-30)).item()


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


def default_matmul_size(device: torch.device) -> int:
    """8192 on CUDA: a 2048 product leaves an H100 mostly idle (34 of its
    ~790 bf16 TFLOP/s measured), so it is no limit; 2048 on CPU."""
    return 8192 if device.type == 'cuda' else 2048


def copy_step(device: torch.device,
              nbytes: int) -> Callable[[], object]:
    """``dst.copy_(src)`` of two ``nbytes`` tensors on the device; it moves
    ``2 * nbytes`` (read + write)."""
    numel = max(nbytes // 4, 1)
    src = torch.full((numel, ), 1.0, device=device)
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)


def default_copy_bytes(device: torch.device) -> int:
    """1 GiB on CUDA (far beyond any cache), 256 MiB on CPU."""
    return 2**30 if device.type == 'cuda' else 2**28


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


def limit_steps(device: torch.device, dtypes: Dict[str, torch.dtype],
                matmul_size: int,
                copy_bytes: int) -> Dict[str, Callable[[], object]]:
    """The steps that measure the device's limits, to time in the same
    rounds as the rows: ``mm-<precision>`` for each of ``dtypes``,
    ``mm-onednn`` on CPU where oneDNN is available, and ``copy``."""
    steps = {f'mm-{name}': matmul_step(device, dtype, matmul_size)
             for name, dtype in dtypes.items()}
    onednn = onednn_matmul_step(matmul_size) if device.type == 'cpu' else None
    if onednn is not None:
        steps['mm-onednn'] = onednn
    steps['copy'] = copy_step(device, copy_bytes)
    return steps


def limit_rates(times: Dict[Hashable, List[float]], device: torch.device,
                matmul_size: int, copy_bytes: int) -> Dict[str, object]:
    """The limits from the rounds' times of :func:`limit_steps`:
    ``matmul_gflops`` per precision, ``onednn_fp32_matmul_gflops`` (None
    where not timed) and ``copy_gb_per_s`` (read + written)."""
    flops = matmul_flops(matmul_size)
    rates = {
        name[len('mm-'):]: flops / limit_seconds(values, device) / 1e9
        for name, values in times.items()
        if isinstance(name, str) and name.startswith('mm-')
        and name != 'mm-onednn'
    }
    onednn = times.get('mm-onednn')
    return dict(
        matmul_size=matmul_size,
        matmul_gflops=rates,
        onednn_fp32_matmul_gflops=(
            flops / limit_seconds(onednn, device) / 1e9 if onednn else None),
        copy_bytes=copy_bytes,
        copy_gb_per_s=2 * copy_bytes / limit_seconds(times['copy'],
                                                     device) / 1e9,
        statistic='best' if device.type == 'cuda' else 'median')


def machine_info(device: torch.device) -> Dict[str, object]:
    """What the figures were measured on."""
    info: Dict[str, object] = dict(
        device=str(device), torch=torch.__version__,
        threads=torch.get_num_threads())
    info['timer'] = ('CUDA events' if timer_for(device) is cuda_event_times
                     else 'wall clock')
    if device.type == 'cuda':
        info['name'] = torch.cuda.get_device_name(device)
        info['cuda'] = torch.version.cuda
        info['cudnn'] = torch.backends.cudnn.version()
        info['cudnn_benchmark'] = torch.backends.cudnn.benchmark
        info['tf32_matmul'] = torch.backends.cuda.matmul.allow_tf32
        info['tf32_cudnn'] = torch.backends.cudnn.allow_tf32
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


def describe_machine(machine: Dict[str, object]) -> str:
    """One line from :func:`machine_info`: the device, threads and torch;
    on CUDA also the settings that change the figures and the clock."""
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


def percent(value: Optional[float]) -> str:
    """A :func:`fraction` as a whole percentage, ``-`` when unknown."""
    return '-' if value is None else f'{value:.0%}'


def markdown_table(header: List[str], rows: List[List[str]]) -> str:
    """The rows (cells already formatted) as a markdown table."""
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines)
