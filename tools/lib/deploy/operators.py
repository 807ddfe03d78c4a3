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
        return torch._shape_as_tensor(x)[dim]
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
    the classes) is not taken: that many candidates after the score
    threshold differ from mmdet only where per-class and offset IoUs differ
    (docs/deploy.md).

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
