"""Exporting an mmdet detector or mmseg segmentor to ONNX, two ways:

- :func:`export_end2end`: the bundle's one self-contained graph, image to
  predictions (:mod:`.end2end`, with :mod:`.operators`), standard ONNX
  operators only;
- :func:`export_model`: the networks alone as separate graphs (the
  detector's ``end2end.onnx`` to the neck's features and the dense head's
  raw outputs plus one graph per RoI head; the segmentor's to the decode
  head's logits), which :mod:`.runtime` runs inside mmdet's / mmseg's own
  code. It serves the onnxruntime rows of the benchmark tools (the tensor
  path's speed), not deployment.

The TorchScript exporter is used (``dynamo=False``; the default of
``torch.onnx.export`` in torch >= 2.9 is the dynamo exporter). One rewrite
is applied during export: ``nn.AdaptiveAvgPool2d`` (mmseg's pyramid
pooling, bins 1, 2, 3, 6) becomes :class:`ExportableAdaptiveAvgPool2d`,
the same bins written with standard ops for any H and W (the TorchScript
exporter refuses sizes not divisible by the bin count, and the dynamo
exporter's graph is wrong at other sizes).
"""
import contextlib
import json
import os
import os.path as osp
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

#: The opset used unless ``--opset`` says otherwise: the first with
#: LayerNormalization (opset 17), which the TorchScript exporter emits for
#: ``F.layer_norm`` (older opsets spell it out with ReduceMean).
DEFAULT_OPSET = 17
#: The manifest :mod:`.runtime` reads next to the graphs.
MANIFEST = 'deploy.json'
#: The model config the runtime builds mmdet's / mmseg's post-processing
#: from (no weights are read from it).
MODEL_CONFIG = 'deploy_cfg.py'


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


# ------------------------------------------------------------ graphs
class DetectorGraph(nn.Module):
    """Batch -> (features if ``with_feats``) + the dense head's outputs,
    flattened to a tuple of tensors (see :func:`flat_structure`)."""

    def __init__(self, model: nn.Module, head: nn.Module,
                 with_feats: bool) -> None:
        super().__init__()
        self.model, self.head, self.with_feats = model, head, with_feats

    def forward(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        feats = self.model.extract_feat(inputs)
        outs = self.head(feats)
        flat = list(feats) if self.with_feats else []
        for out in outs:
            flat.extend(out if isinstance(out, (list, tuple)) else [out])
        return tuple(flat)


class SegmentorGraph(nn.Module):
    """Batch (or one sliding window) -> the decode head's logits, before
    mmseg resizes them (``decode_head.predict_by_feat``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model.decode_head(self.model.extract_feat(inputs))


class HeadGraph(nn.Module):
    """RoI features -> a RoI head's outputs (a tensor or a tuple)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, feats: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        out = self.head(feats)
        return tuple(out) if isinstance(out, (list, tuple)) else (out, )


def flat_structure(outs: Sequence[Any]) -> List[int]:
    """How :class:`DetectorGraph` flattens a head's outputs: one entry per
    output, its number of tensors (-1 for a bare tensor)."""
    return [len(o) if isinstance(o, (list, tuple)) else -1 for o in outs]


@dataclass
class GraphSpec:
    """One graph to export: the module, its example input, and what the
    runtime needs to call it."""
    name: str  # file stem, e.g. 'end2end', 'bbox_head_0'
    role: str  # 'end2end', 'bbox_head', 'mask_head'
    module: nn.Module
    example: torch.Tensor
    output_names: List[str]
    dynamic_axes: Dict[str, Dict[int, str]]
    meta: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # torch.onnx.export puts the module back into its mode before the
        # export, recursively: a wrapper left in training mode (the
        # default of a new module) would switch the whole model to it
        self.module.eval()


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


def roi_heads(model: nn.Module) -> List[Tuple[str, str, nn.Module]]:
    """``(graph name, role, module)`` of every RoI head of a two-stage
    detector (a Cascade R-CNN's stages as ``bbox_head_0`` ...).

    Raises:
        DeployError: The RoI head holds weights elsewhere (a shared head, a
            semantic branch) that the runtime would not replace.
    """
    roi_head = model.roi_head
    heads = []
    for role in ('bbox_head', 'mask_head'):
        head = getattr(roi_head, role, None)
        if head is None:
            continue
        if isinstance(head, nn.ModuleList):
            heads += [(f'{role}_{i}', role, h) for i, h in enumerate(head)]
        else:
            heads.append((role, role, head))
    for name, child in roi_head.named_children():
        if name in ('bbox_head', 'mask_head'):
            continue
        if any(True for _ in child.parameters()):
            raise DeployError(
                f'cannot export model.roi_head.{name} '
                f'({type(child).__name__}): only the bbox and mask heads of '
                'a RoI head are exported, and this module has weights too')
    return heads


def _roi_feature_shape(extractor: nn.Module) -> Tuple[int, int, int]:
    extractor = (extractor[0]
                 if isinstance(extractor, nn.ModuleList) else extractor)
    size = extractor.roi_layers[0].output_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    return (extractor.out_channels, *size)


def graph_specs(model: nn.Module, example: torch.Tensor,
                dynamic: bool) -> List[GraphSpec]:
    """The graphs of ``model`` (see the module docstring), with names,
    example inputs and dynamic axes.

    Args:
        model (nn.Module): An mmdet detector or mmseg segmentor in eval
            mode.
        example (Tensor): A preprocessed batch, (N, 3, H, W).
        dynamic (bool): Batch, H and W dynamic in ``end2end.onnx``; the
            RoI heads always take any number of RoIs.
    """
    kind = model_kind(model)
    image_axes = {0: 'batch', 2: 'height', 3: 'width'} if dynamic else {}
    if kind == 'segmentor':
        module = SegmentorGraph(model)
        axes = {'inputs': image_axes, 'seg_logits': image_axes}
        return [
            GraphSpec('end2end', 'end2end', module, example, ['seg_logits'],
                      {k: v for k, v in axes.items() if v})
        ]
    head = model.rpn_head if kind == 'two_stage' else model.bbox_head
    with_feats = kind == 'two_stage'
    module = DetectorGraph(model, head, with_feats)
    with torch.no_grad():
        feats = model.extract_feat(example)
        structure = flat_structure(head(feats))
    num_feats = len(feats) if with_feats else 0
    names = [f'feat_{i}' for i in range(num_feats)]
    for i, n in enumerate(structure):
        names += ([f'head_{i}_{j}' for j in range(n)]
                  if n >= 0 else [f'head_{i}'])
    axes = {'inputs': image_axes} if dynamic else {}
    if dynamic:
        axes.update({n: image_axes for n in names})
    specs = [
        GraphSpec('end2end', 'end2end', module, example, names, axes,
                  dict(num_feats=num_feats, structure=structure))
    ]
    if kind == 'two_stage':
        extractors = dict(bbox_head=model.roi_head.bbox_roi_extractor,
                          mask_head=getattr(model.roi_head,
                                            'mask_roi_extractor', None))
        for name, role, roi_head in roi_heads(model):
            extractor = extractors[role]
            if extractor is None:  # mask head sharing the bbox extractor
                extractor = extractors['bbox_head']
            shape = _roi_feature_shape(extractor)
            roi_example = torch.randn(2, *shape, dtype=example.dtype)
            with torch.no_grad():
                n_out = len(HeadGraph(roi_head)(roi_example))
            outs = [f'{role}_out_{i}' for i in range(n_out)]
            roi_axes = {n: {0: 'rois'} for n in ['inputs'] + outs}
            specs.append(
                GraphSpec(name, role, HeadGraph(roi_head), roi_example, outs,
                          roi_axes, dict(tuple_out=n_out > 1)))
    return specs


# ------------------------------------------------------------ export
def _failing_module(model: nn.Module, spec: 'GraphSpec', err: Exception,
                    tb: Any) -> Optional[str]:
    """The module of ``model`` where an export failed, as
    ``model.<name> (Type)``: the innermost module on the traceback (an
    error while tracing), or else (an operator without ONNX symbolic,
    ``aten::<op>`` in the message) the innermost module that ran that
    operator in a forward of ``spec``'s module."""
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
            spec.module(spec.example)
    except Exception:  # noqa: BLE001 - only looking for the operator
        pass
    finally:
        for hook in hooks:
            hook.remove()
    return label(callers[0]) if callers else f'the operator aten::{op}'


def export_graph(spec: GraphSpec, path: str, opset: int,
                 model: nn.Module) -> None:
    """``torch.onnx.export`` one graph with the TorchScript exporter.

    Raises:
        DeployError: The export failed; names the module where it did.
    """
    import warnings
    try:
        with warnings.catch_warnings():
            # TracerWarnings about Python values in mmdet/mmseg code: the
            # parity check after export is what tells whether they matter.
            warnings.simplefilter('ignore')
            torch.onnx.export(
                spec.module, (spec.example, ),
                path,
                dynamo=False,
                opset_version=opset,
                input_names=['inputs'],
                output_names=spec.output_names,
                dynamic_axes=spec.dynamic_axes or None,
                do_constant_folding=True)
    except Exception as err:  # noqa: BLE001 - reported with the module
        where = _failing_module(model, spec, err, sys.exc_info()[2])
        first = str(err).strip().splitlines()[0] if str(err).strip() else ''
        raise DeployError(
            f'cannot export {where or type(spec.module).__name__} '
            f'(graph {spec.name}): {type(err).__name__}: {first}') from err


@dataclass
class ExportResult:
    """What :func:`export_model` wrote."""
    out_dir: str
    files: Dict[str, str]  # graph name -> path
    seconds: float
    replaced: List[str]  # modules rewritten for export
    manifest: Dict[str, Any]


def export_model(model: nn.Module,
                 cfg: Any,
                 example: torch.Tensor,
                 out_dir: str,
                 dynamic: bool = True,
                 opset: int = DEFAULT_OPSET,
                 fp16: bool = False) -> ExportResult:
    """Export every graph of ``model`` into ``out_dir``, with the manifest
    (:data:`MANIFEST`) and the model config (:data:`MODEL_CONFIG`) that
    :func:`.runtime.load_runtime` reads.

    Args:
        model (nn.Module): The detector / segmentor, eval mode, on CPU.
        cfg (Config): Its config (the ``model`` entry is saved).
        example (Tensor): A preprocessed batch (``data_preprocessor``
            output), which also fixes H and W when not ``dynamic``.
        out_dir (str): Created if missing.
        dynamic (bool): Batch, H and W dynamic. Defaults to True.
        opset (int): ONNX opset. Defaults to :data:`DEFAULT_OPSET`.
        fp16 (bool): Weights and activations in fp16, with LayerNorm and
            GRN statistics in fp32 (the backbone computes them on fp32
            casts, which the graph keeps). Defaults to False.

    Returns:
        ExportResult: Files, seconds and the manifest.
    """
    import copy
    os.makedirs(out_dir, exist_ok=True)
    if fp16:
        model = copy.deepcopy(model).half()
        example = example.half()
    start = time.perf_counter()
    files = {}
    with exportable_modules(model) as replaced, torch.no_grad():
        specs = graph_specs(model, example, dynamic)
        for spec in specs:
            path = osp.join(out_dir, f'{spec.name}.onnx')
            export_graph(spec, path, opset, model)
            files[spec.name] = path
    seconds = time.perf_counter() - start
    manifest = dict(
        kind=model_kind(model),
        opset=opset,
        dynamic=dynamic,
        fp16=fp16,
        input_shape=None if dynamic else list(example.shape),
        graphs=[
            dict(name=s.name, role=s.role, file=f'{s.name}.onnx',
                 outputs=s.output_names, **s.meta) for s in specs
        ])
    with open(osp.join(out_dir, MANIFEST), 'w') as f:
        json.dump(manifest, f, indent=1)
    cfg.dump(osp.join(out_dir, MODEL_CONFIG))
    return ExportResult(out_dir, files, seconds, replaced, manifest)


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
    import types
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
            spec = types.SimpleNamespace(
                module=lambda x: graph(x, *list(inputs.values())[1:]),
                example=inputs['inputs'])
            where = _failing_module(model, spec, err, sys.exc_info()[2])
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
