"""The bundle's graph in a lower precision, written beside the fp32 graph
(``end2end.onnx``), which ``bundle.json`` then stops naming:

- :func:`export_fp16`: the networks (backbone, neck, heads) in fp16, for
  GPU runtimes, with everything a half-precision engine gets wrong kept
  in fp32: LayerNorm and GRN statistics (the backbone computes them on
  fp32 casts: fp16 sums of squares overflow in ConvNeXt's last stage, and
  V2's GRN in fp16 detects nothing), and all the steps between and after
  the networks: anchors, top-k, box decoding, NMS / soft-NMS, RoIAlign,
  resizing, argmax. The casts sit at the networks' inputs and outputs
  (:func:`half_networks`), so the graph's inputs and outputs stay fp32.
- :func:`quantize_int8`: onnxruntime's static quantization in the QDQ
  format (standard ``QuantizeLinear`` / ``DequantizeLinear``), calibrated
  on a folder of images.

A whole-graph converter (``onnxruntime.transformers.float16``) was tried
and not used: it stores every tensor of a "kept fp32" node in fp16 too,
so decoded boxes and scores were rounded to fp16 (half a pixel at 1,000
pixels).
"""
import copy
import os.path as osp
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from .bundle import bundle_module, example_inputs, name_graph
from .export import DEFAULT_OPSET, END2END, DeployError, export_end2end

FP16_GRAPH = 'end2end_fp16.onnx'
INT8_GRAPH = 'end2end_int8.onnx'
#: The modules an fp16 graph runs in fp16 (attribute paths; a cascade's
#: heads are lists). The RoI extractors stay fp32: RoIAlign in fp32.
NETWORKS = ('backbone', 'neck', 'rpn_head', 'bbox_head', 'decode_head',
            'roi_head.bbox_head', 'roi_head.mask_head')
#: What the int8 graph quantizes; LayerNorm, GRN, box decoding, NMS,
#: RoIAlign and the resizes stay fp32.
INT8_OPS = ('Conv', 'MatMul', 'Gemm')


def _cast(value: Any, dtype: torch.dtype) -> Any:
    """Floating tensors in ``value`` (nested lists, tuples, dicts) as
    ``dtype``; everything else unchanged."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, dtype) for v in value)
    if isinstance(value, dict):
        return {k: _cast(v, dtype) for k, v in value.items()}
    return value


def network_modules(model: nn.Module) -> List[nn.Module]:
    """The modules of :data:`NETWORKS` that ``model`` has (each head of a
    cascade separately)."""
    found = []
    for path in NETWORKS:
        module: Any = model
        for name in path.split('.'):
            module = getattr(module, name, None)
        if isinstance(module, nn.ModuleList):
            found += list(module)
        elif isinstance(module, nn.Module):
            found.append(module)
    return found


def half_networks(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose networks (:func:`network_modules`) hold
    fp16 weights and run in fp16: their floating inputs are cast to fp16
    on the way in, their outputs to fp32 on the way out, so what the graph
    computes between them (:mod:`.end2end`) stays fp32."""
    model = copy.deepcopy(model).eval()
    for module in network_modules(model):
        module.half()
        module.register_forward_pre_hook(
            lambda _, args: _cast(args, torch.float16))
        module.register_forward_hook(
            lambda _, args, out: _cast(out, torch.float32))
    return model


def export_fp16(out_dir: str, model: nn.Module, data: dict,
                shape: Optional[Any] = None,
                opset: int = DEFAULT_OPSET) -> Dict[str, Any]:
    """Export the fp16 graph (:func:`half_networks`) into
    :data:`FP16_GRAPH` and name it in ``bundle.json``.

    Args:
        out_dir (str): A bundle written by :func:`.bundle.write_bundle`.
        model (nn.Module): The fp32 detector / segmentor (not changed).
        data (dict): A ``test_step`` batch, the export's example.
        shape (tuple[int, int], optional): As for the fp32 graph.
        opset (int): As for the fp32 graph.

    Returns:
        dict: ``mb`` (the graph's size), ``seconds``, ``fp16_nodes`` (the
        graph's nodes reading fp16 tensors, by op type).
    """
    half = half_networks(model)
    path = osp.join(out_dir, FP16_GRAPH)
    info = export_end2end(half, example_inputs(model, data, shape), path,
                          dynamic=shape is None, opset=opset)
    name_graph(out_dir, FP16_GRAPH, 'fp16')
    return dict(mb=round(osp.getsize(path) / 2**20, 2),
                seconds=round(info['seconds'], 2),
                fp16_nodes=fp16_nodes(path))


def fp16_nodes(path: str) -> Dict[str, int]:
    """Nodes of the graph at ``path`` (``Loop`` bodies included) whose
    first input is fp16, counted by op type."""
    import onnx
    proto = onnx.shape_inference.infer_shapes(onnx.load(path))
    counts: Dict[str, int] = {}

    def visit(graph: Any, types: Dict[str, int]) -> None:
        types = dict(types)
        for v in list(graph.input) + list(graph.value_info) + \
                list(graph.output):
            types[v.name] = v.type.tensor_type.elem_type
        types.update({t.name: t.data_type for t in graph.initializer})
        for node in graph.node:
            if node.input and types.get(node.input[0]) == \
                    onnx.TensorProto.FLOAT16:
                counts[node.op_type] = counts.get(node.op_type, 0) + 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g, types)

    visit(proto.graph, {})
    return dict(sorted(counts.items()))


def quantize_int8(out_dir: str, calib_dir: str,
                  max_images: int = 64) -> Dict[str, Any]:
    """Quantize the bundle's fp32 graph with onnxruntime's static
    quantization (QDQ format: standard ``QuantizeLinear`` /
    ``DequantizeLinear``, int8 weights per channel, int8 activations
    calibrated on the images of ``calib_dir`` preprocessed by the bundle
    itself) into :data:`INT8_GRAPH`, which ``bundle.json`` then names.
    Only :data:`INT8_OPS` are quantized, outside ``Loop`` bodies (soft-NMS,
    sliding windows stay fp32).

    Returns:
        dict: ``calib_images``, ``mb``, ``quantized`` (node counts by op).

    Raises:
        DeployError: No readable image in ``calib_dir``, or onnxruntime's
            quantization failed.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat,
                                          QuantType, quantize_static)
    module = bundle_module(out_dir)
    predictor = module.Predictor(out_dir,
                                 providers=['CPUExecutionProvider'])
    try:
        files = module.collect_images([calib_dir])[:max_images]
    except module.BundleError as err:
        raise DeployError(f'--calib: {err}') from None
    feeds = [predictor.feeds(image)[0] for image in
             (module.read_image(f) for f in files) if image is not None]
    if not feeds:
        raise DeployError(f'--calib {calib_dir!r}: no image could be read')

    class Reader(CalibrationDataReader):

        def __init__(self) -> None:
            self.feeds = iter(feeds)

        def get_next(self) -> Optional[Dict[str, Any]]:
            return next(self.feeds, None)

    source = osp.join(out_dir, END2END)
    target = osp.join(out_dir, INT8_GRAPH)
    try:
        quantize_static(source, target, Reader(),
                        quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(INT8_OPS),
                        activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, per_channel=True,
                        extra_options=dict(ActivationSymmetric=True))
    except Exception as err:  # noqa: BLE001 - onnxruntime's, reported
        raise DeployError(f'int8 quantization failed: {type(err).__name__}: '
                          f'{err}') from err
    name_graph(out_dir, INT8_GRAPH, 'int8')
    graph = onnx.load(target).graph
    quantized = {op: sum(1 for n in graph.node if n.op_type == op)
                 for op in ('QuantizeLinear', 'DequantizeLinear')}
    return dict(calib_images=len(feeds), quantized=quantized,
                mb=round(osp.getsize(target) / 2**20, 2))

