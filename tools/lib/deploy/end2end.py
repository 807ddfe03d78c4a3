"""What goes into the self-contained graph: an mmdet detector or mmseg
segmentor from the preprocessed image to its predictions, restated with
:mod:`.operators` step for step as mmdet 3.x / mmseg 1.x compute them.

Graph inputs (one image per call):

- ``inputs`` (1, 3, H, W) float32: resized, normalised and padded;
- ``img_shape`` (2,) ``[h, w]`` of the resized image inside the padding
  (float32 for detectors, int64 for segmentors);
- detectors: ``scale_factor`` (2,) float32 ``[w_scale, h_scale]`` (resized /
  original);
- segmentors: ``ori_shape`` (2,) int64 ``[h, w]`` of the original image.

Outputs: detectors ``boxes`` (D, 4) in original-image pixels, ``scores``
(D,), ``labels`` (D,) int64, and for instance models ``masks`` (D, M, M),
the mask probabilities of each detection's class (pasted outside the
graph: a pasted mask is D x H x W floats); segmentors ``labels`` (h, w)
int64, the label map at the original size. A slide-mode segmentor is
exported for any size as a ``Loop`` over the windows around one window's
graph (:class:`WindowGraph`), or for one size (``static``) with the
windows unrolled.

What cannot be expressed raises :class:`~.export.DeployError` naming the
module and what would be needed.
"""
from typing import Any, List, Tuple

import torch
import torch.nn as nn

from .export import DeployError
from .operators import (ResizeTo, RoIAlignOp, batched_nms, coder_problem,
                        decode_boxes, nms_problem, shape_of, topk_count)


def _refuse(where: str, module: Any, why: str) -> DeployError:
    return DeployError(
        f'cannot express {where} ({type(module).__name__}) in one ONNX '
        f'graph: {why}')


# ------------------------------------------------------------ RoI steps
def roi_features(extractor: nn.Module, feats: Tuple[torch.Tensor, ...],
                 boxes: torch.Tensor) -> torch.Tensor:
    """mmdet's ``SingleRoIExtractor`` on one image's boxes: each RoI to its
    level (``map_roi_levels``), one ``RoiAlign`` per level."""
    layer = extractor.roi_layers[0]
    out_h, out_w = layer.output_size
    num_levels = len(extractor.featmap_strides)
    feats = feats[:num_levels]
    batch_idx = torch.zeros_like(boxes[:, 0]).long()

    def align(level: int, rois: torch.Tensor,
              idx: torch.Tensor) -> torch.Tensor:
        lay = extractor.roi_layers[level]
        return RoIAlignOp.apply(feats[level], rois, idx, out_h, out_w,
                                float(lay.spatial_scale),
                                int(lay.sampling_ratio), bool(lay.aligned))

    if num_levels == 1:
        return align(0, boxes, batch_idx)
    rois = torch.cat([batch_idx[:, None].to(boxes), boxes], 1)
    levels = extractor.map_roi_levels(rois, num_levels)
    out = feats[0].new_zeros(boxes.shape[0], extractor.out_channels, out_h,
                             out_w)
    for level in range(num_levels):
        inds = (levels == level).nonzero().squeeze(1)
        out = out.index_put((inds, ), align(level, boxes[inds],
                                            batch_idx[inds]))
    return out


def check_extractor(name: str, extractor: nn.Module) -> None:
    if type(extractor).__name__ != 'SingleRoIExtractor':
        raise _refuse(name, extractor, 'only SingleRoIExtractor is restated')
    for layer in extractor.roi_layers:
        if type(layer).__name__ != 'RoIAlign' or layer.pool_mode != 'avg':
            raise _refuse(name, extractor,
                          'RoI layers other than RoIAlign(pool_mode=avg) '
                          'have no standard ONNX operator')


def large_enough(cfg: Any, boxes: torch.Tensor,
                 *others: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """The boxes (and the rows of ``others``) wider and taller than
    ``cfg.min_bbox_size``, when the test config sets one (>= 0)."""
    if cfg.get('min_bbox_size', -1) < 0:
        return (boxes, *others)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    valid = ((w > cfg.min_bbox_size) &
             (h > cfg.min_bbox_size)).nonzero().squeeze(1)
    return tuple(t[valid] for t in (boxes, *others))


# ------------------------------------------------------- detector graphs
class TwoStageGraph(nn.Module):
    """mmdet ``TwoStageDetector`` with an ``RPNHead`` and a
    ``StandardRoIHead`` or ``CascadeRoIHead`` (Faster / Mask / Cascade
    (Mask) R-CNN): ``predict`` of the RPN, the box head(s) with their
    class-specific or agnostic decoding and NMS / soft-NMS, and the mask
    head(s) before pasting."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.cfg = model.test_cfg
        self.check()

    def check(self) -> None:
        m = self.model
        if type(m.rpn_head).__name__ != 'RPNHead':
            raise _refuse('model.rpn_head', m.rpn_head,
                          'only RPNHead is restated')
        for name, problem in (('model.rpn_head', coder_problem(
                m.rpn_head.bbox_coder)), ('model.test_cfg.rpn.nms',
                                          nms_problem(self.cfg.rpn.nms))):
            if problem:
                raise _refuse(name, m.rpn_head, problem)
        roi_head = m.roi_head
        kind = type(roi_head).__name__
        if kind not in ('StandardRoIHead', 'CascadeRoIHead'):
            raise _refuse('model.roi_head', roi_head,
                          'StandardRoIHead and CascadeRoIHead are restated; '
                          'this one needs its predict written with '
                          'tools/lib/deploy/operators.py')
        if roi_head.with_shared_head:
            raise _refuse('model.roi_head.shared_head', roi_head,
                          'a shared head is not restated')
        problem = nms_problem(self.cfg.rcnn.nms)
        if problem:
            raise _refuse('model.test_cfg.rcnn.nms', roi_head, problem)
        heads = self.bbox_heads()
        for i, head in enumerate(heads):
            if type(head).__name__ not in ('Shared2FCBBoxHead', 'BBoxHead',
                                           'ConvFCBBoxHead',
                                           'Shared4Conv1FCBBoxHead'):
                raise _refuse(f'model.roi_head.bbox_head[{i}]', head,
                              'only BBoxHead / ConvFCBBoxHead subclasses '
                              'of mmdet are restated')
            if head.custom_cls_channels or head.custom_activation:
                raise _refuse(f'model.roi_head.bbox_head[{i}]', head,
                              'custom classifier activations are not '
                              'restated')
            problem = coder_problem(head.bbox_coder)
            if problem:
                raise _refuse(f'model.roi_head.bbox_head[{i}]', head, problem)
        extractors = self.as_list(roi_head.bbox_roi_extractor)
        if roi_head.with_mask:
            extractors += self.as_list(roi_head.mask_roi_extractor)
            for head in self.as_list(roi_head.mask_head):
                if type(head).__name__ != 'FCNMaskHead':
                    raise _refuse('model.roi_head.mask_head', head,
                                  'only FCNMaskHead is restated')
        for extractor in extractors:
            check_extractor('model.roi_head.*_roi_extractor', extractor)

    @staticmethod
    def as_list(module: Any) -> List[nn.Module]:
        return list(module) if isinstance(module, nn.ModuleList) else [module]

    def bbox_heads(self) -> List[nn.Module]:
        return self.as_list(self.model.roi_head.bbox_head)

    def rpn(self, feats: Tuple[torch.Tensor, ...],
            img_shape: torch.Tensor) -> torch.Tensor:
        """``RPNHead.predict_by_feat`` for one image: the proposals."""
        head, cfg = self.model.rpn_head, self.cfg.rpn
        cls_scores, bbox_preds = head(feats)
        sizes = [c.shape[-2:] for c in cls_scores]
        priors = head.prior_generator.grid_priors(
            sizes, dtype=cls_scores[0].dtype, device=cls_scores[0].device)
        all_scores, all_deltas, all_priors, all_levels = [], [], [], []
        for level, (cls, reg, prior) in enumerate(
                zip(cls_scores, bbox_preds, priors)):
            reg = reg[0].permute(1, 2, 0).reshape(-1, 4)
            cls = cls[0].permute(1, 2, 0).reshape(-1, head.cls_out_channels)
            scores = (cls.sigmoid() if head.use_sigmoid_cls else
                      cls.softmax(-1)[:, :-1]).reshape(-1)
            if cfg.nms_pre > 0:
                scores, idx = scores.topk(
                    topk_count(cfg.nms_pre, shape_of(scores, 0)))
                reg, prior = reg[idx], prior[idx]
            all_scores.append(scores)
            all_deltas.append(reg)
            all_priors.append(prior)
            all_levels.append(torch.full_like(scores, level).long())
        scores, levels = torch.cat(all_scores), torch.cat(all_levels)
        boxes = decode_boxes(head.bbox_coder, torch.cat(all_priors),
                             torch.cat(all_deltas), img_shape)
        boxes, scores, levels = large_enough(cfg, boxes, scores, levels)
        keep, _ = batched_nms(boxes, scores, levels, cfg.nms,
                              cfg.max_per_img)
        return boxes[keep]

    def box_branch(self, stage: int, feats: Tuple[torch.Tensor, ...],
                   rois: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        roi_head = self.model.roi_head
        extractor = self.as_list(roi_head.bbox_roi_extractor)[stage]
        return self.bbox_heads()[stage](roi_features(extractor, feats, rois))

    def detections(self, head: nn.Module, rois: torch.Tensor,
                   cls_score: torch.Tensor, bbox_pred: torch.Tensor,
                   img_shape: torch.Tensor, scale: Any
                   ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``BBoxHead._predict_by_feat_single`` + ``multiclass_nms``;
        ``scale`` (1 / scale factor, x y x y) rescales the boxes before NMS
        as mmdet does without a mask head, None keeps them in the resized
        image (mask models rescale after the masks)."""
        cfg = self.cfg.rcnn
        probs = cls_score.softmax(-1)
        num_classes = head.num_classes
        if head.reg_class_agnostic:
            boxes = decode_boxes(head.bbox_coder, rois, bbox_pred, img_shape)
            boxes = boxes[:, None, :].expand(-1, num_classes, 4)
        else:
            boxes = decode_boxes(head.bbox_coder,
                                 rois.repeat_interleave(num_classes, dim=0),
                                 bbox_pred.reshape(-1, 4), img_shape)
        boxes = boxes.reshape(-1, 4)
        if scale is not None:
            boxes = boxes * scale
        scores = probs[:, :-1].reshape(-1)
        labels = torch.arange(num_classes, device=rois.device)[None, :]
        labels = labels.expand(probs.shape[0], num_classes).reshape(-1)
        valid = (scores > cfg.score_thr).nonzero().squeeze(1)
        boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
        keep, scores = batched_nms(boxes, scores, labels, cfg.nms,
                                   cfg.max_per_img)
        return boxes[keep], scores, labels[keep]

    def mask_probs(self, feats: Tuple[torch.Tensor, ...], boxes: torch.Tensor,
                   labels: torch.Tensor) -> torch.Tensor:
        """The mask head(s) on the detections (averaged over a cascade's
        stages, as ``merge_aug_masks``), the label's channel, sigmoid."""
        roi_head = self.model.roi_head
        extractors = self.as_list(roi_head.mask_roi_extractor)
        probs = [
            head(roi_features(extractor, feats, boxes)).sigmoid()
            for head, extractor in zip(self.as_list(roi_head.mask_head),
                                       extractors)
        ]
        probs = probs[0] if len(probs) == 1 else torch.stack(probs).mean(0)
        if self.as_list(roi_head.mask_head)[-1].class_agnostic:
            return probs[:, 0]
        index = labels[:, None, None, None].expand(-1, 1, probs.shape[2],
                                                   probs.shape[3])
        return probs.gather(1, index)[:, 0]

    def forward(self, inputs: torch.Tensor, img_shape: torch.Tensor,
                scale_factor: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        m = self.model
        feats = m.extract_feat(inputs)
        rois = self.rpn(feats, img_shape)
        heads = self.bbox_heads()
        all_scores = []
        for stage, head in enumerate(heads):
            cls_score, bbox_pred = self.box_branch(stage, feats, rois)
            all_scores.append(cls_score)
            if stage < len(heads) - 1:  # CascadeRoIHead._refine_roi
                if not head.reg_class_agnostic:
                    label = cls_score[:, :-1].argmax(dim=1) * 4
                    index = torch.stack([label + i for i in range(4)], 1)
                    bbox_pred = torch.gather(bbox_pred, 1, index)
                rois = decode_boxes(head.bbox_coder, rois, bbox_pred,
                                    img_shape)
        if len(heads) > 1:
            cls_score = sum(all_scores) / float(len(all_scores))
        inverse = (1.0 / scale_factor).repeat(2)[None, :]
        if not m.roi_head.with_mask:
            return self.detections(heads[-1], rois, cls_score, bbox_pred,
                                   img_shape, inverse)
        boxes, scores, labels = self.detections(heads[-1], rois, cls_score,
                                                bbox_pred, img_shape, None)
        masks = self.mask_probs(feats, boxes, labels)
        return (boxes / scale_factor.repeat(2)[None, :], scores, labels,
                masks)


class DenseGraph(nn.Module):
    """mmdet ``SingleStageDetector`` whose head predicts through
    ``BaseDenseHead.predict_by_feat`` (RetinaNet, FCOS, ATSS, FSAF, ...):
    per level top-k after the score threshold, decoding, rescaling, score
    factors (centerness), NMS / soft-NMS."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.cfg = model.bbox_head.test_cfg
        from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
        head = model.bbox_head
        for name in ('predict_by_feat', '_predict_by_feat_single',
                     '_bbox_post_process', 'predict'):
            if getattr(type(head), name) is not getattr(BaseDenseHead, name):
                raise _refuse(
                    'model.bbox_head', head,
                    f'it overrides BaseDenseHead.{name}, which the graph '
                    'restates (its own needs writing with '
                    'tools/lib/deploy/operators.py)')
        for problem in (coder_problem(head.bbox_coder),
                        nms_problem(self.cfg.nms)):
            if problem:
                raise _refuse('model.bbox_head', head, problem)
        if self.cfg.get('nms_pre', -1) <= 0:
            raise _refuse('model.test_cfg', head, 'nms_pre must be > 0')

    def forward(self, inputs: torch.Tensor, img_shape: torch.Tensor,
                scale_factor: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        head, cfg = self.model.bbox_head, self.cfg
        outs = head(self.model.extract_feat(inputs))
        cls_scores, bbox_preds = outs[0], outs[1]
        factors = outs[2] if len(outs) > 2 else None
        sizes = [c.shape[-2:] for c in cls_scores]
        priors = head.prior_generator.grid_priors(
            sizes, dtype=cls_scores[0].dtype, device=cls_scores[0].device)
        keep_scores, keep_labels, keep_deltas, keep_priors = [], [], [], []
        keep_factors = []
        classes = head.cls_out_channels
        for level, (cls, reg, prior) in enumerate(
                zip(cls_scores, bbox_preds, priors)):
            reg = reg[0].permute(1, 2, 0).reshape(-1,
                                                  head.bbox_coder.encode_size)
            cls = cls[0].permute(1, 2, 0).reshape(-1, classes)
            scores = cls.sigmoid() if head.use_sigmoid_cls else \
                cls.softmax(-1)[:, :-1]
            per_class = shape_of(scores, 1)
            flat = scores.reshape(-1)
            valid = (flat > cfg.get('score_thr', 0)).nonzero().squeeze(1)
            flat = flat[valid]
            flat, order = flat.topk(topk_count(cfg.nms_pre,
                                               shape_of(flat, 0)))
            index = valid[order]
            anchor = torch.div(index, per_class, rounding_mode='floor')
            keep_scores.append(flat)
            keep_labels.append(index - anchor * per_class)
            keep_deltas.append(reg[anchor])
            keep_priors.append(prior[anchor])
            if factors is not None:
                keep_factors.append(
                    factors[level][0].permute(1, 2, 0).reshape(-1).sigmoid()
                    [anchor])
        boxes = decode_boxes(head.bbox_coder, torch.cat(keep_priors),
                             torch.cat(keep_deltas), img_shape)
        boxes = boxes / scale_factor.repeat(2)[None, :]
        scores, labels = torch.cat(keep_scores), torch.cat(keep_labels)
        if factors is not None:
            scores = scores * torch.cat(keep_factors)
        boxes, scores, labels = large_enough(cfg, boxes, scores, labels)
        keep, scores = batched_nms(boxes, scores, labels, cfg.nms,
                                   cfg.max_per_img)
        return boxes[keep], scores, labels[keep]


# ------------------------------------------------------- segmentor graph
def input_sized_logits(model: nn.Module,
                       inputs: torch.Tensor) -> torch.Tensor:
    """mmseg's ``encode_decode``: the decode head's logits resized to the
    input's size (``decode_head.predict_by_feat``)."""
    logits = model.decode_head(model.extract_feat(inputs))
    size = torch.stack([shape_of(inputs, 2), shape_of(inputs, 3)]) if \
        torch.onnx.is_in_onnx_export() else torch.tensor(inputs.shape[2:])
    return ResizeTo.apply(logits, size, bool(model.decode_head.align_corners))


class SegmentorGraph(nn.Module):
    """mmseg ``EncoderDecoder.predict`` for one image: ``whole`` inference
    at any size, or ``slide`` inference unrolled for the export's input
    size (``static``), then ``postprocess_result``: the padding cropped, the
    logits resized to the original size, argmax."""

    def __init__(self, model: nn.Module, static: bool) -> None:
        super().__init__()
        self.model = model
        mode = model.test_cfg.get('mode', 'whole')
        if mode not in ('whole', 'slide'):
            raise _refuse('model.test_cfg.mode', model,
                          f'unknown mode {mode!r}')
        if model.decode_head.out_channels == 1:
            raise _refuse('model.decode_head', model.decode_head,
                          'binary (out_channels=1) heads are not restated')
        self.mode = mode

    def forward(self, inputs: torch.Tensor, img_shape: torch.Tensor,
                ori_shape: torch.Tensor) -> torch.Tensor:
        m = self.model
        align = bool(m.decode_head.align_corners)
        if self.mode == 'slide':
            size = tuple(inputs.shape[2:])
            logits = m.slide_inference(
                inputs, [dict(img_shape=size, ori_shape=size)])
        else:
            logits = input_sized_logits(m, inputs)
        logits = logits[:, :, :img_shape[0], :img_shape[1]]
        logits = ResizeTo.apply(logits, ori_shape, align)
        return logits[0].argmax(0)


class WindowGraph(nn.Module):
    """One window of mmseg's ``slide_inference``: ``encode_decode`` of a
    crop, its logits resized to the crop's size. The export puts it in the
    body of a ``Loop`` over the windows (:func:`.operators.slide_model`),
    which makes slide mode one graph for any image size."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        SegmentorGraph(model, static=True)  # the same checks

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return input_sized_logits(self.model, inputs)


def end2end_graph(model: nn.Module, static: bool) -> nn.Module:
    """The graph module of ``model`` (see the module docstring); for a
    slide-mode segmentor exported for any size, the :class:`WindowGraph`
    the export wraps in a ``Loop``.

    Raises:
        DeployError: A model or module the graph cannot express, named.
    """
    from .export import model_kind
    kind = model_kind(model)
    if kind == 'segmentor':
        if model.test_cfg.get('mode', 'whole') == 'slide' and not static:
            return WindowGraph(model).eval()
        return SegmentorGraph(model, static).eval()
    if kind == 'two_stage':
        return TwoStageGraph(model).eval()
    return DenseGraph(model).eval()
