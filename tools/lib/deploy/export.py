"""Exporting an mmdet detector or mmseg segmentor to ONNX:
:func:`export_end2end` writes the bundle's one self-contained graph, image
to predictions (:mod:`.end2end`, with :mod:`.operators`), standard ONNX
operators only.

The TorchScript exporter is used (``dynamo=False``; the default of
``torch.onnx.export`` in torch >= 2.9 is the dynamo exporter). One rewrite
is applied during export: ``nn.AdaptiveAvgPool2d`` (mmseg's pyramid
pooling, bins 1, 2, 3, 6) becomes :class:`ExportableAdaptiveAvgPool2d`,
the same bins written with standard ops for any H and W (the TorchScript
exporter refuses sizes not divisible by the bin count, and the dynamo
exporter's graph is wrong at other sizes).
"""
import contextlib
import os.path as osp
import sys
import time
import traceback
from typing import Any, Callable, Dict, Iterator, List, Optional

import torch
import torch.nn as nn

#: The opset used unless ``--opset`` says otherwise: the first with
#: LayerNormalization (opset 17), which the TorchScript exporter emits for
#: ``F.layer_norm`` (older opsets spell it out with ReduceMean).
DEFAULT_OPSET = 17


class DeployError(Exception):
    """A model or input the deploy tools cannot handle as asked; the message
    says what and how to go on (reported as one ``error: ...`` line)."""


# ------------------------------------------------------- pooling rewrite
def _bin_matrix(length: torch.Tensor, bins: int,
                ones: torch.Tensor) -> torch.Tensor:
    """``(bins, L)``: row ``i`` averages positions ``floor(i * L / bins)`` to
    ``ceil((i + 1) * L / bins) - 1``, PyTorch's adaptive pooling bins.

    ``ones`` is an (L,) tensor of ones taken from the input, so that L and
    the positions are computed from the input's shape in the graph (Python
    ints of a traced size would be frozen into constants). The arithmetic
    is in fp32 on small integers, hence exact.
    """
    pos = torch.cumsum(ones, 0) - 1  # 0 .. L-1
    idx = torch.arange(bins, dtype=torch.float32)
    start = torch.floor(idx * length / bins)
    end = torch.ceil((idx + 1) * length / bins)
    mask = ((pos[None, :] >= start[:, None]) &
            (pos[None, :] < end[:, None])).float()
    return mask / mask.sum(1, keepdim=True)


class ExportableAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two matrix products with bin matrices
    computed from the input's shape: standard ONNX ops (Shape-free: CumSum,
    Floor, MatMul), exact bins at any H and W, so a dynamic-shape export
    stays correct at every size.

    Args:
        output_size (int | tuple[int, int]): As ``nn.AdaptiveAvgPool2d``'s
            (``None`` entries are not supported).
    """

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        size = ((output_size, output_size) if isinstance(output_size, int)
                else tuple(output_size))
        if len(size) != 2 or not all(isinstance(s, int) for s in size):
            raise DeployError(
                f'AdaptiveAvgPool2d(output_size={output_size!r}): only '
                'integer output sizes can be exported')
        self.output_size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        ones_h = torch.ones_like(x32[0, 0, :, 0])
        ones_w = torch.ones_like(x32[0, 0, 0, :])
        rows = _bin_matrix(ones_h.sum(), self.output_size[0], ones_h)
        cols = _bin_matrix(ones_w.sum(), self.output_size[1], ones_w)
        out = torch.matmul(torch.matmul(rows, x32), cols.transpose(0, 1))
        return out.to(x.dtype)


@contextlib.contextmanager
def exportable_modules(model: nn.Module) -> Iterator[List[str]]:
    """Within the block, every ``nn.AdaptiveAvgPool2d`` of ``model`` is an
    :class:`ExportableAdaptiveAvgPool2d`; the originals are put back after.
    Yields the names of the replaced modules."""
    replaced = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.AdaptiveAvgPool2d:
                setattr(module, child_name,
                        ExportableAdaptiveAvgPool2d(child.output_size))
                replaced.append((module, child_name, child,
                                 f'{name}.{child_name}'.lstrip('.')))
    try:
        yield [full for *_, full in replaced]
    finally:
        for module, child_name, child, _ in replaced:
            setattr(module, child_name, child)


# ------------------------------------------------------- what to export
def model_kind(model: nn.Module) -> str:
    """``'two_stage'``, ``'single_stage'`` or ``'segmentor'``.

    Raises:
        DeployError: Any other model class, named.
    """
    kinds = []
    try:
        from mmdet.models.detectors import SingleStageDetector, TwoStageDetector
        kinds += [(TwoStageDetector, 'two_stage'),
                  (SingleStageDetector, 'single_stage')]
    except ImportError:
        pass
    try:
        from mmseg.models.segmentors import (CascadeEncoderDecoder,
                                             EncoderDecoder)
        if not isinstance(model, CascadeEncoderDecoder):
            kinds.append((EncoderDecoder, 'segmentor'))
    except ImportError:
        pass
    for cls, kind in kinds:
        if isinstance(model, cls):
            return kind
    raise DeployError(
        f'cannot export {type(model).__name__}: the deploy tool exports '
        'mmdet SingleStageDetector / TwoStageDetector models (RetinaNet, '
        'FCOS, Faster / Mask / Cascade R-CNN, ...) and mmseg EncoderDecoder '
        'segmentors')


def _failing_module(model: nn.Module, replay: Callable[[], Any],
                    err: Exception, tb: Any) -> Optional[str]:
    """The module of ``model`` where an export failed, as
    ``model.<name> (Type)``: the innermost module on the traceback (an
    error while tracing), or else (an operator without ONNX symbolic,
    ``aten::<op>`` in the message) the innermost module that ran that
    operator when ``replay`` runs the exported forward again."""
    import re
    names = {id(m): n for n, m in model.named_modules()}

    def label(module: nn.Module) -> str:
        name = names[id(module)]
        return (f'model.{name}' if name else 'model') + \
            f' ({type(module).__name__})'

    found = None
    for frame, _ in traceback.walk_tb(tb):
        obj = frame.f_locals.get('self')
        if isinstance(obj, nn.Module) and id(obj) in names and \
                obj is not model:
            found = label(obj)
    if found:
        return found
    match = re.search(r"'?aten::(\w+)'?", str(err))
    if not match:
        return None
    op = match.group(1)
    from torch.utils._python_dispatch import TorchDispatchMode
    stack: List[nn.Module] = []
    callers: List[nn.Module] = []

    class Spy(TorchDispatchMode):

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            # composite operators arrive decomposed (aten::linalg_svd as
            # aten::_linalg_svd), in-place ones with a trailing _
            name = func._schema.name.split('::')[-1].strip('_')
            if name == op.strip('_') and stack and not callers:
                callers.append(stack[-1])
            return func(*args, **(kwargs or {}))

    def enter(module: nn.Module, _: Any) -> None:
        stack.append(module)

    def leave(module: nn.Module, *_: Any) -> None:  # None: output unchanged
        stack.pop()

    hooks = []
    for module in model.modules():
        hooks.append(module.register_forward_pre_hook(enter))
        hooks.append(module.register_forward_hook(leave))
    try:
        with torch.no_grad(), Spy():
            replay()
    except Exception:  # noqa: BLE001 - only looking for the operator
        pass
    finally:
        for hook in hooks:
            hook.remove()
    return label(callers[0]) if callers else f'the operator aten::{op}'


# ------------------------------------------------ the self-contained graph
#: The graph of the bundle (tools/lib/deploy/end2end.py).
END2END = 'end2end.onnx'


def export_end2end(model: nn.Module, inputs: Dict[str, torch.Tensor],
                   path: str, dynamic: bool = True,
                   opset: int = DEFAULT_OPSET) -> Dict[str, Any]:
    """Export ``model`` as one graph, image to predictions
    (:mod:`.end2end`), with standard ONNX operators only.

    Args:
        model (nn.Module): The detector / segmentor, eval mode, on CPU.
        inputs (dict): The graph's example inputs by name, in order
            (``inputs``, ``img_shape``, ``scale_factor`` / ``ori_shape``).
        path (str): The ``.onnx`` file.
        dynamic (bool): H and W of ``inputs`` dynamic. Defaults to True.
        opset (int): ONNX opset (>= 16, for ``RoiAlign``'s half-pixel
            mode). Defaults to :data:`DEFAULT_OPSET`.

    Returns:
        dict: ``seconds``, ``outputs`` (names), ``op_types``,
        ``replaced`` (modules rewritten for export).

    Raises:
        DeployError: A module the graph cannot express, or an export
            failure, naming the module.
    """
    import warnings

    import onnx

    from .end2end import WindowGraph, end2end_graph
    from .operators import (expand_soft_nms, op_types, slide_model,
                            standard_domain_only)
    if opset < 16:
        raise DeployError(f'--opset {opset}: the graph needs opset 16 or '
                          'later (RoiAlign with half-pixel coordinates)')
    graph = end2end_graph(model, static=not dynamic)
    windows = isinstance(graph, WindowGraph)
    if windows:  # one window's graph, wrapped in a Loop below
        crop = tuple(model.test_cfg.crop_size)
        inputs = dict(inputs=inputs['inputs'][..., :crop[0], :crop[1]])
    names = list(inputs)
    with torch.no_grad():
        outputs = graph(*inputs.values())
    outputs = outputs if isinstance(outputs, tuple) else (outputs, )
    if len(outputs) == 1:
        output_names = ['labels']
    else:
        output_names = ['boxes', 'scores', 'labels', 'masks'][:len(outputs)]
    axes: Dict[str, Dict[int, str]] = {
        n: {0: 'detections'} for n in output_names}
    if len(outputs) == 1:
        axes = {'labels': {0: 'height', 1: 'width'}}
    if dynamic:
        axes['inputs'] = {2: 'input_height', 3: 'input_width'}
    if windows:
        axes['labels'] = {2: 'input_height', 3: 'input_width'}
    start = time.perf_counter()
    with exportable_modules(model) as replaced, torch.no_grad():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                torch.onnx.export(graph, tuple(inputs.values()), path,
                                  dynamo=False, opset_version=opset,
                                  input_names=names,
                                  output_names=output_names,
                                  dynamic_axes=axes,
                                  do_constant_folding=True)
        except DeployError:
            raise
        except Exception as err:  # noqa: BLE001 - reported with the module
            where = _failing_module(
                model, lambda: graph(*inputs.values()), err,
                sys.exc_info()[2])
            first = str(err).strip().splitlines()[0] if str(err).strip() \
                else ''
            raise DeployError(
                f'cannot export {where or type(graph).__name__} (graph '
                f'{osp.basename(path)}): {type(err).__name__}: {first}'
            ) from err
    proto = onnx.load(path)
    if windows:
        proto = slide_model(proto, model.test_cfg.crop_size,
                            model.test_cfg.stride,
                            model.decode_head.out_channels,
                            bool(model.decode_head.align_corners))
    expand_soft_nms(proto)
    foreign = standard_domain_only(proto)
    if foreign:
        raise DeployError(
            f'{osp.basename(path)} holds operators outside the standard '
            f'ONNX domain: {sorted(set(foreign))}')
    onnx.checker.check_model(proto)
    onnx.save(proto, path)
    return dict(seconds=time.perf_counter() - start,
                outputs=['labels'] if windows else output_names,
                op_types=list(op_types(proto)), replaced=replaced)
