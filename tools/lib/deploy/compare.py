"""How far the bundle's predictions are from mmdet's / mmseg's own
(``model.test_step``): detections matched by label, box IoU and score,
their masks, label-map pixels. Plain numpy on both sides."""
from typing import Any, Dict, List, Sequence

import numpy as np

#: A detection counts as reproduced at this box IoU with the same label and
#: a score within :data:`SCORE_TOL`; its mask at this mask IoU, or when the
#: two masks differ in at most :data:`MASK_PIXEL_TOL` pixels (a mask of a
#: few dozen pixels loses IoU 0.99 to one pixel whose probability is 0.5
#: within float noise). The deploy tool fails when fewer than
#: :data:`MIN_AGREEMENT` of an image's detections (or pixels) are
#: reproduced.
IOU = 0.99
SCORE_TOL = 1e-3
MASK_PIXEL_TOL = 1
MIN_AGREEMENT = 0.99


def reference_predictions(sample: Any) -> Dict[str, np.ndarray]:
    """An mmdet ``DetDataSample`` / mmseg ``SegDataSample`` as the arrays
    ``predict.py``'s ``Predictor`` returns."""
    if 'pred_sem_seg' in sample:
        return dict(label_map=sample.pred_sem_seg.data[0].cpu().numpy())
    inst = sample.pred_instances
    out = dict(boxes=inst.bboxes.cpu().numpy(),
               scores=inst.scores.cpu().numpy(),
               labels=inst.labels.cpu().numpy())
    if 'masks' in inst:
        out['masks'] = np.asarray(inst.masks.cpu().numpy(), dtype=bool)
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of x1 y1 x2 y2 boxes."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def masks_agree(a: np.ndarray, b: np.ndarray) -> bool:
    """Mask IoU >= :data:`IOU`, or at most :data:`MASK_PIXEL_TOL` pixels
    differ."""
    union = np.logical_or(a, b).sum()
    differ = union - np.logical_and(a, b).sum()
    return bool(differ <= MASK_PIXEL_TOL or differ <= (1 - IOU) * union)


def det_agreement(ref: Dict[str, np.ndarray],
                  got: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """Greedy matching of the reference detections to the bundle's, in the
    reference's score order: each takes the free detection of the same
    label with the highest box IoU; a match needs IoU >= :data:`IOU` and
    scores within :data:`SCORE_TOL`.

    Returns:
        dict: ``agreement`` (matched / reference; 1.0 when both are
        empty), counts, ``max_score_diff`` of the matched pairs, with masks
        ``mask_agreement`` (matched pairs whose masks agree,
        :func:`masks_agree`, over the reference) and ``box_agreement``, and
        the first unmatched reference detections.
    """
    n_ref, n_got = len(ref['scores']), len(got['scores'])
    out: Dict[str, Any] = dict(reference=n_ref, exported=n_got)
    masks = 'masks' in ref
    if n_ref == 0:
        out.update(agreement=1.0 if n_got == 0 else 0.0, matched=0,
                   max_score_diff=0.0, unmatched=[])
        if masks:
            out['mask_agreement'] = out['box_agreement'] = out['agreement']
        return out
    ious = box_iou(ref['boxes'].astype(np.float64),
                   got['boxes'].astype(np.float64)) if n_got else \
        np.zeros((n_ref, 0))
    ious[ref['labels'][:, None] != got['labels'][None, :]] = -1.0
    taken = np.zeros(n_got, dtype=bool)
    matched, masks_ok, score_diff, unmatched = 0, 0, 0.0, []
    for i in np.argsort(-ref['scores'], kind='stable'):
        row = np.where(taken, -1.0, ious[i])
        j = int(row.argmax()) if n_got else -1
        diff = abs(float(ref['scores'][i]) - float(got['scores'][j])) \
            if j >= 0 else np.inf
        if j >= 0 and row[j] >= IOU and diff <= SCORE_TOL:
            taken[j] = True
            matched += 1
            score_diff = max(score_diff, diff)
            if masks and masks_agree(ref['masks'][i], got['masks'][j]):
                masks_ok += 1
        elif len(unmatched) < 5:
            unmatched.append(dict(
                label=int(ref['labels'][i]),
                score=round(float(ref['scores'][i]), 5),
                bbox=[round(float(v), 2) for v in ref['boxes'][i]],
                best_iou=round(float(row[j]), 4) if j >= 0 else None))
    out.update(agreement=matched / n_ref, matched=matched,
               max_score_diff=score_diff, unmatched=unmatched)
    if masks:
        out['box_agreement'] = out['agreement']
        out['mask_agreement'] = masks_ok / n_ref
        out['agreement'] = min(out['agreement'], out['mask_agreement'])
    return out


def seg_agreement(ref: Dict[str, np.ndarray],
                  got: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """Fraction of pixels with the same label."""
    a, b = ref['label_map'], got['label_map']
    if a.shape != b.shape:
        return dict(agreement=0.0, shape=list(a.shape),
                    exported_shape=list(b.shape))
    return dict(agreement=float((a == b).mean()), pixels=int(a.size))


def agreement(ref: Dict[str, np.ndarray],
              got: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """:func:`seg_agreement` or :func:`det_agreement`, as the arrays hold."""
    return seg_agreement(ref, got) if 'label_map' in ref else \
        det_agreement(ref, got)


def disagreements(results: Sequence[Dict[str, Any]],
                  minimum: float = MIN_AGREEMENT) -> List[str]:
    """One line per image whose agreement is below ``minimum``."""
    lines = []
    for res in results:
        if 'error' in res:
            lines.append(f"{res['image']}: {res['error']}")
            continue
        if res['agreement'] >= minimum:
            continue
        if 'pixels' in res or 'shape' in res:
            lines.append(f"{res['image']}: {res['agreement']:.4f} of the "
                         'pixels have the same label')
            continue
        parts = [f"boxes {res['matched']}/{res['reference']} matched "
                 f'(label, IoU >= {IOU}, score within {SCORE_TOL}; the '
                 f"bundle has {res['exported']})"]
        if 'mask_agreement' in res:
            parts.append(f"masks {res['mask_agreement']:.4f}")
        if res.get('unmatched'):
            parts.append(f"first unmatched: {res['unmatched'][0]}")
        lines.append(f"{res['image']}: " + '; '.join(parts))
    return lines
