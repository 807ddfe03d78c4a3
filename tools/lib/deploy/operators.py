"""The data-dependent steps of mmdet's / mmseg's inference as standard ONNX
operators, each equal to the mmcv / mmdet / mmseg code it stands for:

- :class:`RoIAlignOp`: ``mmcv.ops.roi_align`` (avg) as ``RoiAlign``-16
  (``half_pixel`` for ``aligned=True``);
- :class:`NMSOp`: ``mmcv.ops.nms`` as ``NonMaxSuppression``, and
  :func:`batched_nms` mmcv's class offsets around it (mmcv computes the IoU
  on the offset boxes: plain per-class NMS can keep another set);
- :class:`SoftNMSOp`: ``mmcv.ops.soft_nms`` as an ONNX ``Loop`` of standard
  operators, written by :func:`expand_soft_nms` after the export (the
  exporter writes a placeholder node, which that pass replaces);
- :class:`ResizeTo`: ``F.interpolate(bilinear)`` to a size held in a tensor;
- :func:`decode_boxes`: mmdet's ``DeltaXYWHBBoxCoder`` /
  ``DistancePointBBoxCoder`` decoding, restated because mmdet's own switches
  to a stale code path under ``torch.onnx.export``.

Each ``torch.autograd.Function`` runs mmcv's / PyTorch's operation while
tracing (so the traced model computes what mmdet does) and writes the ONNX
operator in ``symbolic``.
"""
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

#: ``max_output_boxes_per_class`` of ``NonMaxSuppression`` (0 means none).
ALL_BOXES = 2**31 - 1
#: The domain of the placeholder node :func:`expand_soft_nms` replaces.
PLACEHOLDER_DOMAIN = 'convnext_deploy'
#: mmcv's ``soft_nms`` methods.
SOFT_NMS_METHODS = {'naive': 0, 'linear': 1, 'gaussian': 2}


def _const(g: Any, value: Any, dtype: torch.dtype) -> Any:
    return g.op('Constant', value_t=torch.tensor(value, dtype=dtype))


def tracing() -> bool:
    return torch.onnx.is_in_onnx_export()


class NMSOp(torch.autograd.Function):
    """Indices kept by ``mmcv.ops.nms(boxes, scores, iou_thr)`` (score
    order) <-> ``NonMaxSuppression`` on one batch and one class."""

    @staticmethod
    def forward(ctx: Any, boxes: torch.Tensor, scores: torch.Tensor,
                iou_thr: float) -> torch.Tensor:
        from mmcv.ops import nms
        return nms(boxes, scores, iou_thr)[1]

    @staticmethod
    def symbolic(g: Any, boxes: Any, scores: Any, iou_thr: float) -> Any:
        axis0 = _const(g, [0], torch.long)
        selected = g.op('NonMaxSuppression', g.op('Unsqueeze', boxes, axis0),
                        g.op('Unsqueeze', g.op('Unsqueeze', scores, axis0),
                             axis0),
                        _const(g, [ALL_BOXES], torch.long),
                        _const(g, [iou_thr], torch.float))
        return g.op('Gather', selected, _const(g, 2, torch.long), axis_i=1)


class SoftNMSOp(torch.autograd.Function):
    """``mmcv.ops.soft_nms``'s first ``max_num`` picks as (K, 2) float rows
    ``[kept index, decayed score]`` (soft-NMS picks in descending final
    score, so they are mmdet's result after ``[:max_num]``; one output
    because the TorchScript exporter fails on a function with two) <-> a
    placeholder node that :func:`expand_soft_nms` turns into a ``Loop``."""

    @staticmethod
    def forward(ctx: Any, boxes: torch.Tensor, scores: torch.Tensor,
                iou_thr: float, sigma: float, min_score: float, method: int,
                max_num: int) -> torch.Tensor:
        # mmcv's soft_nms, an autograd Function itself, breaks the
        # exporter's tuple lowering when traced inside this one: the same
        # steps as the Loop, in torch
        x1, y1, x2, y2 = boxes.unbind(1)
        areas = (x2 - x1) * (y2 - y1)
        scores, alive, picks = scores.clone(), torch.ones_like(
            scores, dtype=torch.bool), []
        for _ in range(min(max_num, len(scores))):
            masked = torch.where(alive, scores, torch.full_like(scores,
                                                               -np.inf))
            j = int(masked.argmax())
            if not alive[j]:
                break
            picks.append((j, float(scores[j])))
            w = (torch.minimum(x2[j], x2) - torch.maximum(x1[j], x1)).clamp(0)
            h = (torch.minimum(y2[j], y2) - torch.maximum(y1[j], y1)).clamp(0)
            ovr = w * h / (areas[j] + areas - w * h)
            if method == 2:
                weight = torch.exp(-(ovr * ovr) / sigma)
            else:
                weight = torch.where(ovr >= iou_thr, (1 - ovr) if method
                                     else torch.zeros_like(ovr),
                                     torch.ones_like(ovr))
            alive[j] = False
            scores = torch.where(alive, scores * weight, scores)
            alive &= scores >= min_score
        return boxes.new_tensor(picks).reshape(-1, 2)

    @staticmethod
    def symbolic(g: Any, boxes: Any, scores: Any, iou_thr: float,
                 sigma: float, min_score: float, method: int,
                 max_num: int) -> Any:
        out = g.op(f'{PLACEHOLDER_DOMAIN}::SoftNMS', boxes, scores,
                   iou_threshold_f=iou_thr, sigma_f=sigma,
                   min_score_f=min_score, method_i=method, max_num_i=max_num)
        out.setType(boxes.type().with_sizes([None, 2]))
        return out


class RoIAlignOp(torch.autograd.Function):
    """``mmcv.ops.roi_align(feat, rois, size, scale, sampling_ratio, 'avg',
    aligned)`` <-> ``RoiAlign``-16 (``half_pixel`` when aligned, else
    ``output_half_pixel``); max abs difference 0.0 measured."""

    @staticmethod
    def forward(ctx: Any, feat: torch.Tensor, boxes: torch.Tensor,
                batch_idx: torch.Tensor, out_h: int, out_w: int,
                scale: float, sampling_ratio: int,
                aligned: bool) -> torch.Tensor:
        from mmcv.ops import roi_align
        rois = torch.cat([batch_idx.to(boxes)[:, None], boxes], 1)
        return roi_align(feat, rois, (out_h, out_w), scale, sampling_ratio,
                         'avg', aligned)

    @staticmethod
    def symbolic(g: Any, feat: Any, boxes: Any, batch_idx: Any, out_h: int,
                 out_w: int, scale: float, sampling_ratio: int,
                 aligned: bool) -> Any:
        mode = 'half_pixel' if aligned else 'output_half_pixel'
        return g.op('RoiAlign', feat, boxes, batch_idx, mode_s='avg',
                    output_height_i=out_h, output_width_i=out_w,
                    sampling_ratio_i=sampling_ratio, spatial_scale_f=scale,
                    coordinate_transformation_mode_s=mode)


class ResizeTo(torch.autograd.Function):
    """``F.interpolate(x, size, mode='bilinear', align_corners=align)``
    with the size in a tensor (``[h, w]``, int64) <-> ``Resize`` linear
    (``pytorch_half_pixel``, or ``align_corners``)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, size: torch.Tensor,
                align: bool) -> torch.Tensor:
        return F.interpolate(x, size=(int(size[0]), int(size[1])),
                             mode='bilinear', align_corners=align)

    @staticmethod
    def symbolic(g: Any, x: Any, size: Any, align: bool) -> Any:
        batch_channels = g.op('Slice', g.op('Shape', x),
                              _const(g, [0], torch.long),
                              _const(g, [2], torch.long))
        sizes = g.op('Concat', batch_channels,
                     g.op('Cast', size, to_i=7), axis_i=0)  # int64
        empty = _const(g, [], torch.float)
        mode = 'align_corners' if align else 'pytorch_half_pixel'
        return g.op('Resize', x, empty, empty, sizes, mode_s='linear',
                    coordinate_transformation_mode_s=mode)


def topk_count(k: int, n: Any) -> Any:
    """``min(k, n)``, as a tensor while exporting (a Python int taken from a
    traced size would freeze that size into the graph)."""
    if tracing():
        n = n if isinstance(n, torch.Tensor) else torch.as_tensor(n)
        return torch.clamp(n, max=k)
    return min(k, int(n))


def shape_of(x: torch.Tensor, dim: int) -> Any:
    """``x.shape[dim]``: a traced tensor while exporting, else an int."""
    if tracing():
        from torch.onnx.operators import shape_as_tensor
        return shape_as_tensor(x)[dim]
    return x.shape[dim]


# ---------------------------------------------------------------- boxes
def _clip(boxes: torch.Tensor, max_shape: torch.Tensor) -> torch.Tensor:
    """Boxes clamped to ``[0, w] x [0, h]`` (``max_shape`` = [h, w])."""
    hi = torch.stack([max_shape[1], max_shape[0], max_shape[1],
                      max_shape[0]]).to(boxes)[None, :]
    return torch.minimum(boxes.clamp(min=0), hi)


def decode_boxes(coder: Any, priors: torch.Tensor, deltas: torch.Tensor,
                 max_shape: torch.Tensor) -> torch.Tensor:
    """``coder.decode(priors, deltas, max_shape)`` for mmdet's
    ``DeltaXYWHBBoxCoder`` (``delta2bbox``, same operation order) and
    ``DistancePointBBoxCoder`` (``distance2bbox``); (n, 4) each.

    Args:
        coder: The head's ``bbox_coder`` (checked by
            :func:`check_coder`).
        max_shape (Tensor): ``[h, w]``, the image inside the padded batch.
    """
    name = type(coder).__name__
    if name == 'DistancePointBBoxCoder':
        boxes = torch.stack([priors[:, 0] - deltas[:, 0],
                             priors[:, 1] - deltas[:, 1],
                             priors[:, 0] + deltas[:, 2],
                             priors[:, 1] + deltas[:, 3]], -1)
        return _clip(boxes, max_shape) if coder.clip_border else boxes
    means = deltas.new_tensor(coder.means).view(1, -1)
    stds = deltas.new_tensor(coder.stds).view(1, -1)
    denorm = deltas * stds + means
    dxy, dwh = denorm[:, :2], denorm[:, 2:]
    pxy = (priors[:, :2] + priors[:, 2:]) * 0.5
    pwh = priors[:, 2:] - priors[:, :2]
    dxy_wh = pwh * dxy
    max_ratio = float(np.abs(np.log(16 / 1000)))  # decode's wh_ratio_clip
    dwh = dwh.clamp(min=-max_ratio, max=max_ratio)
    gxy = pxy + dxy_wh
    gwh = pwh * dwh.exp()
    boxes = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)
    return _clip(boxes, max_shape) if coder.clip_border else boxes


def coder_problem(coder: Any) -> str:
    """Why :func:`decode_boxes` cannot stand for ``coder`` ('' if it can)."""
    name = type(coder).__name__
    if name == 'DistancePointBBoxCoder':
        return ''
    if name != 'DeltaXYWHBBoxCoder':
        return (f'box coder {name}: the graph decodes DeltaXYWHBBoxCoder '
                'and DistancePointBBoxCoder boxes (another coder needs its '
                'decode restated in tools/lib/deploy/operators.py)')
    if getattr(coder, 'add_ctr_clamp', False):
        return 'DeltaXYWHBBoxCoder(add_ctr_clamp=True) is not restated'
    return ''


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor,
                idxs: torch.Tensor, nms_cfg: Dict[str, Any],
                max_num: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``mmcv.ops.batched_nms(boxes, scores, idxs, nms_cfg)`` followed by
    ``[:max_num]``: the kept indices and their scores (decayed by
    soft-NMS). mmcv's branch for 10,000 candidates or more (a loop over
    the classes, on the same offset boxes, then a sort by score) keeps the
    same boxes: after the offsets, boxes of different classes do not
    overlap, so neither NMS nor soft-NMS lets one class act on another
    (measured: 24,000 candidates of 80 classes, agreement 1.0).

    Args:
        nms_cfg (dict): ``type`` ``nms`` or ``soft_nms``,
            ``iou_threshold``, ``class_agnostic``; soft-NMS also
            ``sigma``, ``min_score``, ``method``.
        max_num (int): At most this many kept (-1: all).
    """
    cfg = dict(nms_cfg)
    if cfg.pop('class_agnostic', False):
        offset_boxes = boxes
    else:
        # -inf appended: the max of no box (then no offset is used)
        top = F.pad(boxes.reshape(-1), (0, 1), value=-np.inf).max()
        offsets = idxs.to(boxes) * (top + torch.tensor(1).to(boxes))
        offset_boxes = boxes + offsets[:, None]
    kind = cfg.get('type', 'nms')
    if kind == 'soft_nms':
        picks = SoftNMSOp.apply(offset_boxes, scores,
                                float(cfg.get('iou_threshold', 0.3)),
                                float(cfg.get('sigma', 0.5)),
                                float(cfg.get('min_score', 1e-3)),
                                SOFT_NMS_METHODS[cfg.get('method', 'linear')],
                                max_num if max_num > 0 else ALL_BOXES)
        return picks[:, 0].long(), picks[:, 1]
    keep = NMSOp.apply(offset_boxes, scores, float(cfg['iou_threshold']))
    if max_num > 0:
        keep = keep[:max_num]
    return keep, scores[keep]


def nms_problem(nms_cfg: Dict[str, Any]) -> str:
    """Why :func:`batched_nms` cannot stand for ``nms_cfg`` ('' if it can)."""
    kind = nms_cfg.get('type', 'nms')
    if kind not in ('nms', 'soft_nms'):
        return (f"NMS type {kind!r}: the graph has 'nms' "
                "(NonMaxSuppression) and 'soft_nms' (a Loop)")
    if kind == 'soft_nms' and nms_cfg.get('method', 'linear') not in \
            SOFT_NMS_METHODS:
        return f"soft_nms method {nms_cfg['method']!r} is not mmcv's"
    if nms_cfg.get('offset', 0) != 0:
        return 'NMS with offset != 0 (ONNX computes areas without it)'
    return ''


# ------------------------------------------------- soft-NMS as a Loop
def _soft_nms_nodes(node: Any, prefix: str) -> List[Any]:
    """The standard-op nodes (a ``Loop`` and its set-up) computing what
    :class:`SoftNMSOp` does, for the placeholder ``node``: mmcv's
    ``softnms_cpu`` step by step (pick the highest live score, decay the
    others by their IoU with it, drop those below ``min_score``) for at
    most ``max_num`` picks."""
    from onnx import TensorProto as T
    from onnx import helper as H
    from onnx import numpy_helper
    attrs = {a.name: H.get_attribute_value(a) for a in node.attribute}
    boxes, scores = node.input
    picks_out, = node.output

    def n(name: str) -> str:
        return f'{prefix}{name}'

    def const(name: str, value: Any) -> Any:
        return H.make_node('Constant', [], [name],
                           value=numpy_helper.from_array(np.asarray(value)))

    method = attrs['method']
    if method == 1:  # linear: 1 - IoU where IoU >= thr
        weight = [H.make_node('GreaterOrEqual', ['ovr', 'thr'], ['over']),
                  H.make_node('Sub', ['one', 'ovr'], ['lin']),
                  H.make_node('Where', ['over', 'lin', 'one'], ['weight'])]
    elif method == 0:  # naive: 0 where IoU >= thr
        weight = [H.make_node('GreaterOrEqual', ['ovr', 'thr'], ['over']),
                  H.make_node('Where', ['over', 'zero', 'one'], ['weight'])]
    else:  # gaussian: exp(-IoU^2 / sigma)
        weight = [H.make_node('Mul', ['ovr', 'ovr'], ['ovr2']),
                  H.make_node('Div', ['ovr2', 'sigma'], ['ratio']),
                  H.make_node('Neg', ['ratio'], ['neg']),
                  H.make_node('Exp', ['neg'], ['weight'])]
    body_nodes = [
        const('ninf', np.array(-np.inf, np.float32)),
        const('one', np.array(1.0, np.float32)),
        const('zero', np.array(0.0, np.float32)),
        const('thr', np.array(attrs['iou_threshold'], np.float32))
        if method != 2 else const('sigma', np.array(attrs['sigma'],
                                                     np.float32)),
        const('mins', np.array(attrs['min_score'], np.float32)),
        const('shape1', np.array([1], np.int64)),
        const('zero_i', np.array([0], np.int32)),
        H.make_node('Where', ['alive', 'sc', 'ninf'], ['masked']),
        H.make_node('ArgMax', ['masked'], ['j'], axis=0, keepdims=1),
        H.make_node('Gather', ['masked', 'j'], ['best']),
        H.make_node('Greater', ['best', 'ninf'], ['found']),
        H.make_node('Squeeze', ['found'], ['cond_out']),
        H.make_node('Reshape', ['it', 'shape1'], ['it1']),
        H.make_node('ScatterElements', ['sel_idx', 'it1', 'j'],
                    ['sel_idx_o'], axis=0),
        H.make_node('ScatterElements', ['sel_sc', 'it1', 'best'],
                    ['sel_sc_o'], axis=0),
        H.make_node('Cast', ['cond_out'], ['inc'], to=T.INT64),
        H.make_node('Add', ['cnt', 'inc'], ['cnt_o']),
        *[H.make_node('Gather', [v, 'j'], ['b_' + v])
          for v in ('x1', 'y1', 'x2', 'y2', 'areas')],
        H.make_node('Max', ['b_x1', 'x1'], ['xx1']),
        H.make_node('Max', ['b_y1', 'y1'], ['yy1']),
        H.make_node('Min', ['b_x2', 'x2'], ['xx2']),
        H.make_node('Min', ['b_y2', 'y2'], ['yy2']),
        H.make_node('Sub', ['xx2', 'xx1'], ['dw']),
        H.make_node('Sub', ['yy2', 'yy1'], ['dh']),
        H.make_node('Max', ['dw', 'zero'], ['w']),
        H.make_node('Max', ['dh', 'zero'], ['h']),
        H.make_node('Mul', ['w', 'h'], ['inter']),
        H.make_node('Add', ['b_areas', 'areas'], ['area_sum']),
        H.make_node('Sub', ['area_sum', 'inter'], ['union']),
        H.make_node('Div', ['inter', 'union'], ['ovr']),
        *weight,
        # the pick leaves the live set, the others decay
        H.make_node('Cast', ['alive'], ['alive_i'], to=T.INT32),
        H.make_node('ScatterElements', ['alive_i', 'j', 'zero_i'],
                    ['alive_i1'], axis=0),
        H.make_node('Cast', ['alive_i1'], ['alive1'], to=T.BOOL),
        H.make_node('Mul', ['sc', 'weight'], ['decayed']),
        H.make_node('Where', ['alive1', 'decayed', 'sc'], ['sc_o']),
        H.make_node('GreaterOrEqual', ['sc_o', 'mins'], ['ok']),
        H.make_node('And', ['alive1', 'ok'], ['alive_o']),
    ]
    V = H.make_tensor_value_info
    body = H.make_graph(
        body_nodes, n('soft_nms_body'),
        [V('it', T.INT64, []), V('cond_in', T.BOOL, []),
         V('sc', T.FLOAT, ['N']), V('alive', T.BOOL, ['N']),
         V('sel_idx', T.INT64, ['M']), V('sel_sc', T.FLOAT, ['M']),
         V('cnt', T.INT64, [1])],
        [V('cond_out', T.BOOL, []), V('sc_o', T.FLOAT, ['N']),
         V('alive_o', T.BOOL, ['N']), V('sel_idx_o', T.INT64, ['M']),
         V('sel_sc_o', T.FLOAT, ['M']), V('cnt_o', T.INT64, [1])])
    # unique names per placeholder; the body reads the outer scope's x1 ..
    # areas by their (prefixed) names
    for sub in body.node:
        sub.input[:] = [n(i) for i in sub.input]
        sub.output[:] = [n(o) for o in sub.output]
    for value in list(body.input) + list(body.output):
        value.name = n(value.name)
    outer = [
        *[const(n(f'k{i}'), np.array(i, np.int64)) for i in range(4)],
        *[H.make_node('Gather', [boxes, n(f'k{i}')], [n(v)], axis=1)
          for i, v in enumerate(('x1', 'y1', 'x2', 'y2'))],
        H.make_node('Sub', [n('x2'), n('x1')], [n('bw')]),
        H.make_node('Sub', [n('y2'), n('y1')], [n('bh')]),
        H.make_node('Mul', [n('bw'), n('bh')], [n('areas')]),
        H.make_node('Shape', [scores], [n('count')]),
        const(n('true'), np.array(True)),
        H.make_node('Expand', [n('true'), n('count')], [n('alive0')]),
        const(n('max_num'), np.array([attrs['max_num']], np.int64)),
        H.make_node('Min', [n('count'), n('max_num')], [n('trips1')]),
        const(n('i0'), np.array(0, np.int64)),
        H.make_node('Expand', [n('i0'), n('trips1')], [n('sel0')]),
        const(n('f0'), np.array(0, np.float32)),
        H.make_node('Expand', [n('f0'), n('trips1')], [n('selsc0')]),
        const(n('c0'), np.array([0], np.int64)),
        H.make_node('Squeeze', [n('trips1'), n('c0')], [n('trips')]),
        H.make_node('Loop', [n('trips'), n('true'), scores, n('alive0'),
                             n('sel0'), n('selsc0'), n('c0')],
                    [n('sc_f'), n('alive_f'), n('sel_f'), n('selsc_f'),
                     n('cnt_f')], body=body),
        H.make_node('Slice', [n('sel_f'), n('c0'), n('cnt_f')], [n('keep')]),
        H.make_node('Slice', [n('selsc_f'), n('c0'), n('cnt_f')],
                    [n('kept_scores')]),
        H.make_node('Cast', [n('keep')], [n('keep_f')], to=T.FLOAT),
        const(n('axis1'), np.array([1], np.int64)),
        H.make_node('Unsqueeze', [n('keep_f'), n('axis1')], [n('col0')]),
        H.make_node('Unsqueeze', [n('kept_scores'), n('axis1')],
                    [n('col1')]),
        H.make_node('Concat', [n('col0'), n('col1')], [picks_out], axis=1),
    ]
    return outer


def expand_soft_nms(model: Any) -> int:
    """Replace every :class:`SoftNMSOp` placeholder of an ONNX model (in
    place) by its standard-op ``Loop``; drop the placeholder domain.
    Returns how many were replaced."""
    nodes, count = [], 0
    for node in model.graph.node:
        if node.domain == PLACEHOLDER_DOMAIN and node.op_type == 'SoftNMS':
            nodes += _soft_nms_nodes(node, f'soft_nms{count}/')
            count += 1
        else:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    imports = [o for o in model.opset_import
               if o.domain != PLACEHOLDER_DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(imports)
    return count


def _nodes(model: Any) -> Iterator[Any]:
    """Every node of an ONNX model, subgraphs (``Loop`` bodies) included."""
    from onnx import helper as H

    def walk(graph: Any) -> Iterator[Any]:
        for node in graph.node:
            yield node
            for attr in node.attribute:
                if attr.type == H.AttributeProto.GRAPH:
                    yield from walk(attr.g)

    return walk(model.graph)


def standard_domain_only(model: Any) -> List[str]:
    """The nodes (``domain::op``) of an ONNX model outside the standard
    domain, subgraphs included (empty when it is portable)."""
    return [f'{n.domain}::{n.op_type}' for n in _nodes(model)
            if n.domain not in ('', 'ai.onnx')]


def op_types(model: Any) -> Sequence[str]:
    """Every operator type of an ONNX model, subgraphs included."""
    return sorted({n.op_type for n in _nodes(model)})


# --------------------------------------------- sliding windows as a Loop
def slide_model(window: Any, crop: Sequence[int], stride: Sequence[int],
                num_classes: int, align_corners: bool) -> Any:
    """mmseg's ``slide_inference`` + ``postprocess_result`` around
    ``window`` (an ONNX model: one window's padded input, any size up to
    the crop, to its logits at the window's size) as one ONNX model whose
    ``Loop`` runs the windows an image of any size needs.

    Inputs ``inputs`` (1, 3, H, W), ``img_shape`` and ``ori_shape`` (int64
    ``[h, w]``); output ``labels`` (h, w) int64. The windows, their
    positions (``y1 = h_idx * stride``, ``y2 = min(y1 + crop, H)``, ``y1 =
    max(y2 - crop, 0)``; the same in x), the order of the sums and the
    division by the window count are mmseg's; then the padding is cropped,
    the logits resized to ``ori_shape`` and the argmax taken.
    """
    from onnx import TensorProto as T
    from onnx import helper as H
    from onnx import numpy_helper

    def const(name: str, value: Any, dtype: Any = np.int64) -> Any:
        return H.make_node('Constant', [], [name], value=numpy_helper.from_array(
            np.asarray(value, dtype=dtype), name))

    (hc, wc), (hs, ws) = crop, stride
    win = window.graph
    params = {t.name for t in win.initializer}
    win_in, win_out = win.input[0].name, win.output[0].name

    def rename(name: str) -> str:
        if not name or name in params:
            return name
        if name == win_in:
            return 'crop'
        if name == win_out:
            return 'window_logits'
        return f'window/{name}'

    window_nodes = []
    for node in win.node:
        new = type(node)()
        new.CopyFrom(node)
        new.input[:] = [rename(i) for i in node.input]
        new.output[:] = [rename(o) for o in node.output]
        new.name = f'window/{node.name}'
        window_nodes.append(new)
    unsq0 = 'axis0'
    body = [
        const('axis0', [0]),
        const('zero_s', 0), const('hc', hc), const('wc', wc),
        const('hs', hs), const('ws', ws), const('axes23', [2, 3]),
        const('zeros2', [0, 0]), const('ones2', [1, 1]),
        H.make_node('Div', ['it', 'w_grids'], ['h_idx']),
        H.make_node('Mod', ['it', 'w_grids'], ['w_idx']),
        H.make_node('Mul', ['h_idx', 'hs'], ['y1a']),
        H.make_node('Mul', ['w_idx', 'ws'], ['x1a']),
        H.make_node('Add', ['y1a', 'hc'], ['y2a']),
        H.make_node('Add', ['x1a', 'wc'], ['x2a']),
        H.make_node('Min', ['y2a', 'H'], ['y2']),
        H.make_node('Min', ['x2a', 'W'], ['x2']),
        H.make_node('Sub', ['y2', 'hc'], ['y1b']),
        H.make_node('Sub', ['x2', 'wc'], ['x1b']),
        H.make_node('Max', ['y1b', 'zero_s'], ['y1']),
        H.make_node('Max', ['x1b', 'zero_s'], ['x1']),
        *[H.make_node('Unsqueeze', [v, unsq0], [v + '_1'])
          for v in ('y1', 'x1', 'y2', 'x2')],
        H.make_node('Concat', ['y1_1', 'x1_1'], ['starts'], axis=0),
        H.make_node('Concat', ['y2_1', 'x2_1'], ['ends'], axis=0),
        H.make_node('Slice', ['inputs', 'starts', 'ends', 'axes23'],
                    ['crop']),
        *window_nodes,
        H.make_node('Sub', ['H', 'y2'], ['pad_b']),
        H.make_node('Sub', ['W', 'x2'], ['pad_r']),
        *[H.make_node('Unsqueeze', [v, unsq0], [v + '_1'])
          for v in ('pad_b', 'pad_r')],
        H.make_node('Concat', ['zeros2', 'y1_1', 'x1_1', 'zeros2', 'pad_b_1',
                               'pad_r_1'], ['pads'], axis=0),
        H.make_node('Pad', ['window_logits', 'pads'], ['placed']),
        H.make_node('Add', ['preds', 'placed'], ['preds_o']),
        H.make_node('Sub', ['ends', 'starts'], ['crop_hw']),
        H.make_node('Concat', ['ones2', 'crop_hw'], ['ones_shape'], axis=0),
        H.make_node('ConstantOfShape', ['ones_shape'], ['ones'],
                    value=numpy_helper.from_array(np.ones(1, np.float32))),
        H.make_node('Pad', ['ones', 'pads'], ['covered']),
        H.make_node('Add', ['count', 'covered'], ['count_o']),
        H.make_node('Identity', ['cond'], ['cond_o']),
    ]
    V = H.make_tensor_value_info
    body_graph = H.make_graph(
        body, 'windows',
        [V('it', T.INT64, []), V('cond', T.BOOL, []),
         V('preds', T.FLOAT, None), V('count', T.FLOAT, None)],
        [V('cond_o', T.BOOL, []), V('preds_o', T.FLOAT, None),
         V('count_o', T.FLOAT, None)])
    mode = 'align_corners' if align_corners else 'pytorch_half_pixel'
    outer = [
        const('c2', 2), const('c3', 3), const('one_s', 1),
        const('zero_o', 0), const('hc_o', hc), const('wc_o', wc),
        const('hs_o', hs), const('ws_o', ws), const('axis0_o', [0]),
        const('head', [1, num_classes]), const('head1', [1, 1]),
        const('axes23_o', [2, 3]), const('zeros2_o', [0, 0]),
        const('true', True, np.bool_),
        H.make_node('Shape', ['inputs'], ['shape']),
        H.make_node('Gather', ['shape', 'c2'], ['H']),
        H.make_node('Gather', ['shape', 'c3'], ['W']),
        # grids = max(size - crop + stride - 1, 0) // stride + 1
        *[n for size, c, s, out in (('H', 'hc_o', 'hs_o', 'h_grids'),
                                    ('W', 'wc_o', 'ws_o', 'w_grids'))
          for n in (
              H.make_node('Sub', [size, c], [out + '_a']),
              H.make_node('Add', [out + '_a', s], [out + '_b']),
              H.make_node('Sub', [out + '_b', 'one_s'], [out + '_c']),
              H.make_node('Max', [out + '_c', 'zero_o'], [out + '_d']),
              H.make_node('Div', [out + '_d', s], [out + '_e']),
              H.make_node('Add', [out + '_e', 'one_s'], [out]))],
        H.make_node('Mul', ['h_grids', 'w_grids'], ['windows']),
        H.make_node('Unsqueeze', ['H', 'axis0_o'], ['H_1']),
        H.make_node('Unsqueeze', ['W', 'axis0_o'], ['W_1']),
        H.make_node('Concat', ['head', 'H_1', 'W_1'], ['preds_shape'],
                    axis=0),
        H.make_node('Concat', ['head1', 'H_1', 'W_1'], ['count_shape'],
                    axis=0),
        H.make_node('ConstantOfShape', ['preds_shape'], ['preds0'],
                    value=numpy_helper.from_array(np.zeros(1, np.float32))),
        H.make_node('ConstantOfShape', ['count_shape'], ['count0'],
                    value=numpy_helper.from_array(np.zeros(1, np.float32))),
        H.make_node('Loop', ['windows', 'true', 'preds0', 'count0'],
                    ['preds_f', 'count_f'], body=body_graph),
        H.make_node('Div', ['preds_f', 'count_f'], ['seg_logits']),
        H.make_node('Slice', ['seg_logits', 'zeros2_o', 'img_shape',
                              'axes23_o'], ['unpadded']),
        H.make_node('Concat', ['head', 'ori_shape'], ['out_size'], axis=0),
        H.make_node('Resize', ['unpadded', '', '', 'out_size'], ['resized'],
                    mode='linear', coordinate_transformation_mode=mode),
        H.make_node('ArgMax', ['resized'], ['argmax'], axis=1, keepdims=0),
        H.make_node('Squeeze', ['argmax', 'axis0_o'], ['labels']),
    ]
    graph = H.make_graph(
        outer, 'slide_inference',
        [V('inputs', T.FLOAT, [1, 3, 'input_height', 'input_width']),
         V('img_shape', T.INT64, [2]), V('ori_shape', T.INT64, [2])],
        [V('labels', T.INT64, ['height', 'width'])],
        initializer=list(win.initializer))
    model = H.make_model(graph, opset_imports=list(window.opset_import))
    model.ir_version = window.ir_version
    return model
