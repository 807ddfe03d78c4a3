"""How far an exported model's predictions are from PyTorch's: detections
matched by label and IoU, segmentation pixels, raw graph outputs."""
from typing import Any, Dict, List, Sequence

import torch

#: A detection counts as reproduced at this box IoU (same label), a mask at
#: this mask IoU; the deploy tool fails below this agreement.
IOU = 0.99
MIN_AGREEMENT = 0.99


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def det_agreement(ref: Any, got: Any, iou: float = IOU) -> Dict[str, Any]:
    """Greedy matching of PyTorch's detections (``ref``, an mmdet
    ``InstanceData``) to the exported model's (``got``), in ``ref``'s score
    order: each takes the unmatched detection of the same label with the
    highest box IoU, matched when that IoU >= ``iou``.

    Returns:
        dict: ``agreement`` (matched / len(ref); 1.0 if both are empty),
        ``matched``, ``reference``, ``exported`` (counts), ``max_score_diff``
        of the matched pairs, and with masks ``mask_agreement`` (matched
        pairs whose mask IoU >= ``iou``, over len(ref)), plus the first
        unmatched reference detections (``unmatched``).
    """
    from mmdet.structures.bbox import bbox_overlaps
    n_ref, n_got = len(ref), len(got)
    out: Dict[str, Any] = dict(reference=n_ref, exported=n_got)
    if n_ref == 0:
        out.update(agreement=1.0 if n_got == 0 else 0.0, matched=0,
                   max_score_diff=0.0)
        if 'masks' in ref:
            out['mask_agreement'] = out['agreement']
        out['unmatched'] = []
        return out
    ious = (bbox_overlaps(ref.bboxes.float(), got.bboxes.float())
            if n_got else torch.zeros(n_ref, 0))
    same = ref.labels[:, None] == got.labels[None, :] if n_got else ious > 0
    ious = torch.where(same, ious, torch.full_like(ious, -1.0))
    taken = torch.zeros(n_got, dtype=torch.bool)
    matched, masks_ok, score_diff, unmatched = 0, 0, 0.0, []
    for i in torch.argsort(ref.scores, descending=True).tolist():
        row = ious[i].masked_fill(taken, -1.0) if n_got else ious[i]
        j = int(row.argmax()) if n_got else -1
        if j >= 0 and row[j] >= iou:
            taken[j] = True
            matched += 1
            score_diff = max(score_diff,
                             abs(float(ref.scores[i] - got.scores[j])))
            if 'masks' in ref and _mask_iou(
                    torch.as_tensor(ref.masks[i]).bool(),
                    torch.as_tensor(got.masks[j]).bool()) >= iou:
                masks_ok += 1
        elif len(unmatched) < 5:
            unmatched.append(
                dict(label=int(ref.labels[i]),
                     score=round(float(ref.scores[i]), 5),
                     bbox=[round(v, 2) for v in ref.bboxes[i].tolist()],
                     best_iou=round(float(row[j]), 4) if j >= 0 else None))
    out.update(agreement=matched / n_ref, matched=matched,
               max_score_diff=score_diff, unmatched=unmatched)
    if 'masks' in ref:
        out['mask_agreement'] = masks_ok / n_ref
    return out


def seg_agreement(ref: Any, got: Any) -> Dict[str, Any]:
    """Fraction of pixels with the same label (mmseg ``SegDataSample``s'
    ``pred_sem_seg``) and the largest logit difference."""
    a, b = ref.pred_sem_seg.data, got.pred_sem_seg.data
    if a.shape != b.shape:
        return dict(agreement=0.0, shape=list(a.shape),
                    exported_shape=list(b.shape))
    out = dict(agreement=(a == b).float().mean().item(),
               pixels=a.numel())
    if 'seg_logits' in ref and 'seg_logits' in got:
        out['max_logit_diff'] = (ref.seg_logits.data -
                                 got.seg_logits.data).abs().max().item()
    return out


def sample_agreement(ref: Any, got: Any) -> Dict[str, Any]:
    """:func:`det_agreement` or :func:`seg_agreement`, as the samples
    hold; ``agreement`` is the lower of boxes and masks."""
    if 'pred_sem_seg' in ref:
        return seg_agreement(ref, got)
    out = det_agreement(ref.pred_instances, got.pred_instances)
    if 'mask_agreement' in out:
        out['box_agreement'] = out['agreement']
        out['agreement'] = min(out['agreement'], out['mask_agreement'])
    return out


def max_abs_diffs(records: Dict[str, List[Any]],
                  modules: Dict[str, Any]) -> Dict[str, float]:
    """Per graph, the largest difference between what onnxruntime returned
    (``records``: graph name -> [(input, outputs)]) and the PyTorch module
    on the same inputs."""
    diffs = {}
    with torch.no_grad():
        for name, calls in records.items():
            worst = 0.0
            for inputs, outs in calls:
                expected = modules[name](inputs.to(
                    next(iter(modules[name].parameters())).dtype))
                if isinstance(expected, torch.Tensor):
                    expected = (expected, )
                for e, o in zip(expected, outs):
                    if e.numel():
                        worst = max(worst,
                                    (e.float() - o).abs().max().item())
            if calls:
                diffs[name] = worst
    return diffs


def disagreements(results: Sequence[Dict[str, Any]],
                  minimum: float = MIN_AGREEMENT) -> List[str]:
    """One line per image whose agreement is below ``minimum``."""
    lines = []
    for res in results:
        if res['agreement'] >= minimum:
            continue
        if 'pixels' in res or 'shape' in res:
            lines.append(f"{res['image']}: {res['agreement']:.4f} of the "
                         'pixels have the same label')
            continue
        parts = [f"boxes {res['matched']}/{res['reference']} matched "
                 f'(label, IoU >= {IOU}; the exported model has '
                 f"{res['exported']})"]
        if 'mask_agreement' in res:
            parts.append(f"masks {res['mask_agreement']:.4f}")
        if res.get('unmatched'):
            parts.append(f"first unmatched: {res['unmatched'][0]}")
        lines.append(f"{res['image']}: " + '; '.join(parts))
    return lines
