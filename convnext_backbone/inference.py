"""Inference optimisations of a whole detector or segmentor: one switch.

:func:`optimize_for_inference` converts a built model (any mmdet / mmseg
model, a TTA wrapper or a DDP-wrapped one) in place, in one of
:data:`FAST_MODES`:

- ``'exact'``: every ``Conv2d -> BatchNorm`` pair folded into the conv
  (``torch.nn.utils.fusion.fuse_conv_bn_eval``; mmcv's ``fuse_conv_bn`` rule:
  a BN right after a conv among a module's children, ConvModule's order
  honoured), the whole model in channels-last memory (the backbone's outputs
  included, so a head's convolutions get the layout they run fastest in
  without a copy per level and call). fp32: the predictions of eager within
  float rounding.
- ``'bf16'`` (a CPU with native bfloat16, or CUDA) and ``'fp16'`` (CUDA):
  ``'exact'`` plus autocast to that dtype (mmengine's ``autocast``) around
  the model's networks: backbone, neck and heads (the box and mask heads
  inside RoI heads), their outputs back in fp32, so mmdet's / mmseg's
  post-processing (NMS, box decoding, mask pasting, resizing) runs fp32.

:class:`FastInferenceHook` applies it before the test loop, so any tool that
runs mmengine's Runner gets it from the config::

    custom_hooks = [dict(type='FastInferenceHook', mode='bf16')]

(the repository's ``tools/test.py --fast MODE`` adds exactly that hook).
"""
import functools
from typing import Any, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from torch.nn.utils.fusion import fuse_conv_bn_eval

#: The modes of :func:`optimize_for_inference` (``--fast`` on the tools).
FAST_MODES = ('exact', 'bf16', 'fp16')
_DTYPES = dict(bf16=torch.bfloat16, fp16=torch.float16)
# Marks a converted model, so a second call (hook and tool both) is a no-op.
_MARK = '_fast_inference_mode'


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively
    (AVX512-BF16 or AMX on x86; oneDNN's bf16 path on aarch64).

    Where oneDNN only emulates bf16 (AVX-512 without the BF16 extension)
    bf16 runs slower than fp32 and gains nothing, so it counts as no
    support.
    """
    cpu = getattr(torch, 'cpu', None)
    for probe in ('_is_avx512_bf16_supported', '_is_amx_tile_supported'):
        if getattr(cpu, probe, lambda: False)():
            return True
    if torch.backends.cpu.get_cpu_capability().startswith(('AVX', 'DEFAULT')):
        return False  # x86 without the native instructions
    try:  # aarch64 and other platforms: oneDNN's own check
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_fast_mode(mode: str, device_type: str,
                    emulated_bf16: bool = False) -> None:
    """Refuse a mode this device cannot run.

    Args:
        mode (str): One of :data:`FAST_MODES`.
        device_type (str): ``'cpu'`` or ``'cuda'`` (where the model runs).
        emulated_bf16 (bool): Accept ``'bf16'`` on a CPU that only emulates
            bfloat16 (about 10x slower than fp32, but the same rounding: to
            measure how bf16 changes a model's results on a machine without
            it). Defaults to False.

    Raises:
        ValueError: Names the mode and the fix.
    """
    if mode not in FAST_MODES:
        raise ValueError(f"unknown fast inference mode {mode!r}; choose one "
                         f"of: {', '.join(FAST_MODES)}")
    if mode == 'fp16' and device_type != 'cuda':
        raise ValueError(
            f"fast inference mode 'fp16' needs a CUDA GPU (float16 autocast) "
            f'and the model runs on {device_type}; on CPU use bf16 (CPUs '
            'with AVX512-BF16/AMX) or exact')
    if (mode == 'bf16' and device_type == 'cpu' and not emulated_bf16
            and not cpu_has_native_bf16()):
        raise ValueError(
            "fast inference mode 'bf16' needs a CPU with native bfloat16 "
            '(AVX512-BF16 or AMX; this one reports '
            f'{torch.backends.cpu.get_cpu_capability()}, where bf16 would be '
            'emulated and slower than fp32); use exact (or allow the '
            'emulation to measure bf16 results: --emulated-bf16)')
    if (mode == 'bf16' and device_type == 'cuda'
            and not torch.cuda.is_bf16_supported()):
        raise ValueError("fast inference mode 'bf16' needs a GPU with "
                         'bfloat16 (Ampere or newer); use fp16')


def fuse_conv_bn(module: nn.Module) -> int:
    """Fold every ``BatchNorm`` that follows a ``Conv2d`` into it, in place.

    mmcv's ``fuse_conv_bn`` rule (the package imports no mmcv): among a
    module's children in registration order, a BN right after a conv is
    folded into it and replaced by ``nn.Identity``. Registration order is
    execution order in ``nn.Sequential`` and mmcv's ``ConvModule`` (which
    registers ``conv`` before its norm whatever its ``order``, so a
    ConvModule whose ``order`` puts the norm first is left alone). A BN
    without running statistics, or whose width is not the conv's output
    width, is left alone too. The modules must be in eval mode.

    Args:
        module (nn.Module): Changed in place.

    Returns:
        int: Number of pairs folded.
    """
    order = getattr(module, 'order', None)
    norm_first = (isinstance(order, tuple) and 'norm' in order
                  and 'conv' in order
                  and order.index('norm') < order.index('conv'))
    fused = 0
    last_conv: Optional[str] = None
    for name, child in list(module.named_children()):
        if (isinstance(child, nn.modules.batchnorm._BatchNorm)
                and last_conv is not None and not norm_first):
            conv = module._modules[last_conv]
            if (child.track_running_stats and child.running_mean is not None
                    and child.num_features == conv.out_channels):
                module._modules[last_conv] = fuse_conv_bn_eval(conv, child)
                module._modules[name] = nn.Identity()
                fused += 1
            last_conv = None
        elif isinstance(child, nn.Conv2d):
            last_conv = name
        else:
            last_conv = None
            fused += fuse_conv_bn(child)
    return fused


# Module paths of compiled operators written for NCHW memory: mmcv 2.1's
# CPU RoIAlign reads a channels-last tensor as if it were NCHW and returns
# wrong features without an error (found by the exact-mode test of Mask
# R-CNN). Named by path because the plugin imports no mmcv.
NCHW_ONLY_MODULES = ('mmcv.ops.',)


def guard_nchw_only_ops(model: nn.Module) -> int:
    """Hand the NCHW-only operators (:data:`NCHW_ONLY_MODULES`) of a
    channels-last model NCHW-contiguous inputs.

    A feature map is converted once per forward of ``model`` and shared by
    all such operators (a RoI extractor reads each FPN level once per
    cascade stage and per mask head).

    Args:
        model (nn.Module): Gets forward (pre-)hooks.

    Returns:
        int: Number of operator modules guarded.
    """
    cache = {}  # id -> (tensor, version, NCHW copy), for one forward

    def to_nchw(tensor):
        if not (isinstance(tensor, torch.Tensor) and tensor.dim() == 4
                and not tensor.is_contiguous()):
            return tensor
        hit = cache.get(id(tensor))
        if hit is None or hit[0] is not tensor or hit[1] != tensor._version:
            hit = cache[id(tensor)] = (tensor, tensor._version,
                                       tensor.contiguous())
        return hit[2]

    def pre_hook(module, args):
        return tuple(to_nchw(a) for a in args)

    guarded = 0
    for module in model.modules():
        if type(module).__module__.startswith(NCHW_ONLY_MODULES):
            module.register_forward_pre_hook(pre_hook)
            guarded += 1
    if guarded:
        model.register_forward_pre_hook(lambda *_: cache.clear())
        model.register_forward_hook(lambda *_: cache.clear())
    return guarded


def nchw_logits(model: nn.Module) -> int:
    """Make each segmentation head's classifier (``conv_seg`` of a module
    with ``predict_by_feat``: mmseg's decode heads) return NCHW-contiguous
    logits in a channels-last model.

    mmseg resizes the logits to the input and, in ``slide`` mode, adds each
    window's into an NCHW buffer (``preds += F.pad(logits)``): with
    channels-last logits that add mixes layouts and the resize writes
    channels-last, measured 2.4x slower for UperNet's 150 classes (resize,
    pad and add of one 512 window: 607 ms vs 252 ms on 2 cores). The
    classifier's output is small (1/4 of the input size), so the copy
    here is cheap.

    Returns:
        int: Number of heads changed.
    """
    heads = 0
    for module in model.modules():
        conv = getattr(module, 'conv_seg', None)
        if isinstance(conv, nn.Conv2d) and hasattr(module, 'predict_by_feat'):
            conv.register_forward_hook(lambda m, i, out: out.contiguous())
            heads += 1
    return heads


def _core(model: nn.Module) -> nn.Module:
    """The detector / segmentor inside TTA and data-parallel wrappers (they
    keep it as ``module``)."""
    while isinstance(getattr(model, 'module', None), nn.Module):
        model = model.module
    return model


def _device_type(model: nn.Module) -> str:
    param = next(model.parameters(), None)
    return 'cpu' if param is None else param.device.type


def network_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The modules that hold a detector's / segmentor's networks: the
    ``backbone``, the ``neck`` and every head (a child whose class name ends
    in ``Head``), except RoI heads, whose box and mask heads are taken
    instead (one per cascade stage), so that their RoI extractors (mmcv's
    RoIAlign) and everything between the networks stay fp32."""
    found: List[Tuple[str, nn.Module]] = []

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            full = f'{prefix}{name}'
            kind = type(child).__name__
            if kind.endswith('RoIHead') or isinstance(child, nn.ModuleList):
                visit(child, f'{full}.')
            elif name in ('backbone', 'neck') or kind.endswith('Head'):
                found.append((full, child))

    visit(model, '')
    return found


def _to_fp32(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, tuple) and hasattr(out, '_fields'):  # namedtuple
        return type(out)(*(_to_fp32(o) for o in out))
    if isinstance(out, (list, tuple)):
        return type(out)(_to_fp32(o) for o in out)
    if isinstance(out, dict):
        return {k: _to_fp32(v) for k, v in out.items()}
    return out


def _autocast_networks(model: nn.Module, device_type: str,
                       dtype: torch.dtype) -> int:
    """Run the networks (:func:`network_modules`) under autocast, their
    outputs returned as fp32.

    Autocast around the whole ``forward`` (what mmengine's
    ``TestLoop(fp16=True)`` does, around ``test_step``) also reaches the
    post-processing: mmcv's CPU ``nms`` then gets bfloat16 boxes and stops
    ("expected scalar type Float but found BFloat16", found on the toy Mask
    R-CNN), and box decoding and mask pasting would lose precision. Here
    only the networks run in reduced precision; mmdet's / mmseg's code
    between and after them runs fp32, as it expects. (A model without such
    modules gets its whole ``forward`` wrapped.)

    Returns:
        int: Number of modules wrapped.
    """
    from mmengine.runner.amp import autocast
    modules = [m for _, m in network_modules(model)] or [model]
    for module in modules:
        forward = module.forward

        def forward_in_autocast(*args, _forward=forward, **kwargs):
            with autocast(device_type=device_type, dtype=dtype):
                return _to_fp32(_forward(*args, **kwargs))

        module.forward = functools.wraps(forward)(forward_in_autocast)
    return len(modules)


def optimize_for_inference(model: nn.Module, mode: str,
                           emulated_bf16: bool = False) -> nn.Module:
    """Convert a built detector / segmentor for inference, in place.

    The model is put in eval mode and stays an inference model (the BN
    folding is not undone): call it after the weights are loaded and do not
    train it afterwards. Calling it again does nothing. What was done is
    logged in one line.

    Args:
        model (nn.Module): An mmdet / mmseg model (or a TTA / DDP wrapper of
            one), weights loaded, on its device.
        mode (str): ``'exact'`` (fp32: conv-BN folding, channels-last),
            ``'bf16'`` or ``'fp16'`` (``'exact'`` plus autocast). See the
            module docstring.
        emulated_bf16 (bool): See :func:`check_fast_mode`. Defaults to
            False.

    Returns:
        nn.Module: ``model``.

    Raises:
        ValueError: An unknown mode, or one this device cannot run
            (:func:`check_fast_mode`).
    """
    device_type = _device_type(model)
    check_fast_mode(mode, device_type, emulated_bf16)
    core = _core(model)
    done = getattr(core, _MARK, None)
    if done is not None:
        if done != mode:
            raise ValueError(
                f'the model was already converted for fast inference '
                f'{done!r}; build it again to use {mode!r}')
        return model
    model.eval()
    pairs = fuse_conv_bn(model)
    model.to(memory_format=torch.channels_last)
    guarded = guard_nchw_only_ops(core)
    nchw_logits(core)
    backbones = 0
    for module in model.modules():
        # The backbone hands its features over NCHW-contiguous by default
        # (what any head expects); here every head is channels-last, so an
        # NCHW copy would only be converted back by the first conv.
        if hasattr(module, 'contiguous_outputs'):
            module.contiguous_outputs = False
            backbones += 1
    done = [f'{pairs} conv+BN pairs folded',
            'channels-last memory' +
            (' (backbone outputs too)' if backbones else '') +
            (f' ({guarded} NCHW-only mmcv ops fed NCHW)' if guarded else '')]
    if mode in _DTYPES:
        wrapped = _autocast_networks(core, device_type, _DTYPES[mode])
        done.append(f'{_DTYPES[mode]} autocast on {device_type} around '
                    f'{wrapped} networks (post-processing fp32)')
    setattr(core, _MARK, mode)
    print_log(f"fast inference '{mode}': " + ', '.join(done),
              logger='current')
    return model


@HOOKS.register_module()
class FastInferenceHook(Hook):
    """Apply :func:`optimize_for_inference` to the model before the test
    loop.

    In a config (with ``custom_imports=dict(imports=['convnext_backbone'])``,
    so mmdet's and mmseg's own ``tools/test.py`` apply it too)::

        custom_hooks = [dict(type='FastInferenceHook', mode='bf16')]

    Only the test loop is converted: folding BN is irreversible, so a
    validation inside training keeps the model as it is. ``before_test`` runs
    after the Runner has loaded the checkpoint. Not for runs with
    ``EMAHook``, which swaps parameters in and out around testing.

    Args:
        mode (str): See :data:`FAST_MODES`. Defaults to 'exact'.
        emulated_bf16 (bool): See :func:`check_fast_mode`. Defaults to
            False.
    """

    priority = 'LOW'

    def __init__(self, mode: str = 'exact',
                 emulated_bf16: bool = False) -> None:
        if mode not in FAST_MODES:
            raise ValueError(f'FastInferenceHook(mode={mode!r}): choose one '
                             f"of: {', '.join(FAST_MODES)}")
        self.mode, self.emulated_bf16 = mode, emulated_bf16

    def before_test(self, runner) -> None:
        optimize_for_inference(runner.model, self.mode, self.emulated_bf16)
