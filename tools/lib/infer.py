"""Inference of a trained detector or segmentor on the user's own images
(``tools/infer.py``), on top of mmdet's ``DetInferencer`` and mmseg's
``MMSegInferencer``.

The inferencers bring the test pipeline, batching, the forward pass and the
drawing; this module adds what they leave loose: the inputs checked before
anything is built, one place that builds the model (:func:`build_model`: the
checkpoint must fit the config key for key and shape for shape, where
mmengine's loader only warns), class names from the checkpoint or the
config, and the predictions written as JSON (and a label PNG for
segmentation).
"""
import copy
import importlib
import json
import os
import os.path as osp
import sys
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config

from .cfg_walk import config_scope
from .errors import ConfigPrepareError
from .weights import build_trained_model

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                  '.tiff', '.webp')


class InferenceInputError(ConfigPrepareError):
    """An input image, folder or checkpoint cannot be used; the message
    names it and says what to do."""


# ------------------------------------------------------------------ inputs
def collect_images(inputs: Sequence[str]) -> List[str]:
    """The image files named by ``inputs``, in order: a file as it is, a
    folder as its image files (by extension, sorted, not recursive).

    Raises:
        InferenceInputError: An input does not exist, a file is not an image
            OpenCV can read, a folder holds no image, or two images share a
            file name (their outputs would overwrite each other).
    """
    import cv2
    images: List[str] = []
    for path in inputs:
        if osp.isdir(path):
            found = sorted(
                osp.join(path, name) for name in os.listdir(path)
                if name.lower().endswith(IMG_EXTENSIONS)
                and osp.isfile(osp.join(path, name)))
            if not found:
                raise InferenceInputError(
                    f'folder {path!r} holds no image (looked for '
                    f"{', '.join(IMG_EXTENSIONS)}; subfolders are not "
                    'searched)')
            images += found
        elif osp.isfile(path):
            if not cv2.haveImageReader(path):
                raise InferenceInputError(
                    f'{path!r} is not an image OpenCV can read (formats: '
                    f"{', '.join(IMG_EXTENSIONS)})")
            images.append(path)
        else:
            raise InferenceInputError(
                f'input {path!r} does not exist (give image files or '
                'folders of images)')
    seen: Dict[str, str] = {}
    for path in images:
        stem = osp.splitext(osp.basename(path))[0]
        if stem in seen:
            raise InferenceInputError(
                f'{seen[stem]!r} and {path!r} would write the same outputs '
                f'({stem}.*); run them with different --out-dir')
        seen[stem] = path
    return images


def check_device(device: Optional[str]) -> str:
    """``device``, or ``'cuda'`` when a GPU is visible and ``'cpu'`` if not.

    Raises:
        InferenceInputError: ``cuda`` was asked for and none is visible.
    """
    if device is None:
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise InferenceInputError(
            f'--device {device}: torch sees no CUDA device here (torch '
            f'{torch.__version__}); use --device cpu')
    return device


# ------------------------------------------------------------------- model
def dataset_meta(cfg: Config, checkpoint: dict,
                 num_classes: Optional[int]) -> Dict[str, Any]:
    """Class names and palette: those the checkpoint was trained with (a
    Runner stores them), else the config's test dataset, else numbered
    classes with a random palette.

    Only these two are kept, as mmseg's ``init_model`` does: a Runner
    also stores the dataset's ``label_map`` and ``reduce_zero_label``, which
    the visualizers' ``set_dataset_meta(**meta)`` do not take."""
    meta = checkpoint.get('meta', {}).get('dataset_meta') or {}
    meta = {k.lower(): v for k, v in meta.items()
            if k.lower() in ('classes', 'palette')}
    if not meta.get('classes'):
        meta = dict(config_metainfo(cfg), **meta)
    if not meta.get('classes') and num_classes:
        meta['classes'] = tuple(f'class_{i}' for i in range(num_classes))
    if not meta.get('palette'):
        rng = np.random.RandomState(42)
        meta['palette'] = [tuple(int(c) for c in rng.randint(0, 256, 3))
                           for _ in meta.get('classes', ())]
    return meta


def config_metainfo(cfg: Config) -> Dict[str, Any]:
    """The test dataset's metainfo: its class's (``CocoDataset``,
    ``ADE20KDataset``, ...) updated by the config's ``metainfo``; nothing
    is read from disk."""
    dataset = copy.deepcopy(cfg.get('test_dataloader', {}).get('dataset', {}))
    while 'dataset' in dataset:  # wrappers (RepeatDataset, ...)
        dataset = dataset['dataset']
    scope = config_scope(cfg)
    datasets = importlib.import_module(f'{scope}.registry').DATASETS
    cls = datasets.get(dataset.get('type', '')) if dataset.get('type') \
        else None
    info = dict(getattr(cls, 'METAINFO', {}) or {})
    info.update(dataset.get('metainfo') or {})
    return {k: info[k] for k in ('classes', 'palette') if k in info}


def _num_classes(model_cfg: dict) -> Optional[int]:
    """The classes the config's heads predict, when one says."""
    for key in ('decode_head', 'roi_head', 'bbox_head'):
        head = model_cfg.get(key)
        if isinstance(head, dict):
            if 'num_classes' in head:
                return head['num_classes']
            box = head.get('bbox_head')
            if isinstance(box, (list, tuple)):
                box = box[-1]
            if isinstance(box, dict) and 'num_classes' in box:
                return box['num_classes']
    return None


def build_model(cfg: Config, checkpoint_path: str, device: str,
                fast: Optional[str] = None,
                emulated_bf16: bool = False) -> torch.nn.Module:
    """The config's model with the checkpoint's weights, in eval mode on
    ``device``: the one place ``tools/infer.py`` builds a model (a
    conversion before inference belongs here).

    The backbone's ImageNet ``init_cfg`` is not applied (nothing is
    downloaded), SyncBN becomes BN, and the checkpoint must fit the config
    exactly (mmengine's loader would only warn, and predict with random
    weights where they differ).

    Args:
        cfg (Config): An mmdet or mmseg config (``default_scope``).
        checkpoint_path (str): A checkpoint of this config (path or URL).
        device (str): ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
        fast (str, optional): ``convnext_backbone.optimize_for_inference``
            in this mode after loading (``--fast``). Defaults to None.
        emulated_bf16 (bool): ``--emulated-bf16``. Defaults to False.

    Returns:
        nn.Module: With ``cfg`` and ``dataset_meta`` (classes, palette).

    Raises:
        CheckpointFileError: The checkpoint is missing, unreadable, or
            does not fit the config.
    """
    model, checkpoint = build_trained_model(cfg, checkpoint_path)
    model.cfg = cfg
    model.dataset_meta = dataset_meta(cfg, checkpoint,
                                      _num_classes(cfg.model))
    model = model.to(device).eval()
    if fast is not None:
        from convnext_backbone.inference import optimize_for_inference
        try:
            optimize_for_inference(model, fast, emulated_bf16)
        except ValueError as exc:
            raise ConfigPrepareError(f'--fast {fast}: {exc}') from None
    return model


# -------------------------------------------------------------- inferencers
def build_inferencer(cfg: Config, checkpoint_path: str, device: str,
                     fast: Optional[str] = None,
                     emulated_bf16: bool = False):
    """mmdet's ``DetInferencer`` or mmseg's ``MMSegInferencer``, chosen by
    the config's ``default_scope``, whose model comes from
    :func:`build_model`.

    Returns:
        tuple[str, BaseInferencer]: ``'det'`` or ``'seg'``, the inferencer.
    """
    scope = config_scope(cfg)
    if scope == 'mmdet':
        from mmdet.apis import DetInferencer
        base = DetInferencer
    else:
        from mmseg.apis import MMSegInferencer
        base = MMSegInferencer

    class Inferencer(base):

        def _init_model(self, cfg, weights, device='cpu'):
            return build_model(cfg, weights, device, fast, emulated_bf16)

        def _init_pipeline(self, cfg):
            # No annotations at inference (mmseg's drops them itself; a
            # det test pipeline may load them for evaluation).
            cfg = copy.deepcopy(cfg)
            pipeline = cfg.test_dataloader.dataset.pipeline
            pipeline[:] = [t for t in pipeline
                           if t.get('type') != 'LoadAnnotations']
            return super()._init_pipeline(cfg)

        def visualize(self, inputs, preds, **kwargs):
            # Both inferencers draw an array input as they get it, but the
            # model takes BGR (mmcv.imread) and the drawing is RGB.
            inputs = [i[:, :, ::-1] if isinstance(i, np.ndarray) else i
                      for i in inputs]
            return super().visualize(inputs, preds, **kwargs)

    if scope == 'mmdet':
        inferencer = Inferencer(
            model=cfg, weights=checkpoint_path, device=device, scope='mmdet',
            palette='none', show_progress=False)
        return 'det', inferencer
    inferencer = Inferencer(model=cfg, weights=checkpoint_path, device=device,
                            scope='mmseg')
    meta = inferencer.model.dataset_meta
    inferencer.visualizer.set_dataset_meta(
        classes=list(meta['classes']), palette=[list(p)
                                                for p in meta['palette']])
    inferencer.show_progress = False
    return 'seg', inferencer


# -------------------------------------------------------------- predictions
def det_record(sample, classes: Sequence[str],
               score_thr: float) -> Dict[str, Any]:
    """A DetDataSample's instances at or above ``score_thr`` as plain
    JSON: box (x1, y1, x2, y2 in image pixels), score, label and class name,
    and the mask as COCO RLE when the model predicts masks."""
    from pycocotools import mask as mask_util
    inst = sample.pred_instances
    keep = inst.scores >= score_thr
    inst = inst[keep]
    masks = inst.masks.cpu().numpy() if 'masks' in inst else None
    instances = []
    for i in range(len(inst)):
        label = int(inst.labels[i])
        item = dict(
            label=label,
            class_name=classes[label] if label < len(classes) else str(label),
            score=round(float(inst.scores[i]), 5),
            bbox=[round(float(v), 2) for v in inst.bboxes[i].tolist()])
        if masks is not None:
            rle = mask_util.encode(
                np.asfortranarray(masks[i].astype(np.uint8)))
            item['mask'] = dict(size=[int(s) for s in rle['size']],
                                counts=rle['counts'].decode('ascii'))
        instances.append(item)
    return dict(task='det', score_thr=score_thr, instances=instances)


def seg_record(label_map: np.ndarray,
               classes: Sequence[str]) -> Dict[str, Any]:
    """The classes of a predicted label map (class index per pixel, at the
    image's size) with their pixel counts, most pixels first."""
    values, counts = np.unique(label_map, return_counts=True)
    found = sorted(zip(values.tolist(), counts.tolist()),
                   key=lambda vc: (-vc[1], vc[0]))
    return dict(
        task='seg',
        classes=[
            dict(label=int(v),
                 class_name=classes[v] if v < len(classes) else str(v),
                 pixels=int(c)) for v, c in found
        ])


def write_outputs(task: str, image_path: str, image: np.ndarray, sample,
                  vis: np.ndarray, out_dir: str, classes: Sequence[str],
                  score_thr: float) -> Dict[str, str]:
    """Write one image's drawing, JSON (and seg label PNG) into ``out_dir``;
    ``sample`` is a DetDataSample (det) or the label map (seg).

    Returns:
        dict: The paths written (``vis``, ``json``, and ``label`` for seg).
    """
    import mmcv
    stem = osp.splitext(osp.basename(image_path))[0]
    paths = dict(vis=osp.join(out_dir, 'vis', stem + '.jpg'),
                 json=osp.join(out_dir, 'preds', stem + '.json'))
    mmcv.imwrite(vis[:, :, ::-1], paths['vis'])  # inferencers draw RGB
    if task == 'det':
        record = det_record(sample, classes, score_thr)
    else:
        label_map = np.asarray(sample)
        record = seg_record(label_map, classes)
        paths['label'] = osp.join(out_dir, 'preds', stem + '.png')
        dtype = np.uint8 if len(classes) <= 256 else np.uint16
        mmcv.imwrite(label_map.astype(dtype), paths['label'])
        record['label_png'] = osp.relpath(paths['label'], out_dir)
        record['label_png_values'] = 'index into classes'
    header = dict(image=image_path, height=int(image.shape[0]),
                  width=int(image.shape[1]))
    with open(paths['json'], 'w') as f:
        json.dump(dict(header, **record), f, indent=1)
    return paths


def run_inference(inferencer, task: str, images: Iterable[str], out_dir: str,
                  score_thr: float = 0.3,
                  progress: bool = True) -> Tuple[int, List[str]]:
    """Predict every image, writing its outputs as soon as it is done.

    Returns:
        tuple[int, list[str]]: Images done; one message per image that
        could not be decoded (skipped).
    """
    import mmcv
    from mmengine.utils import ProgressBar
    images = list(images)
    os.makedirs(osp.join(out_dir, 'vis'), exist_ok=True)
    os.makedirs(osp.join(out_dir, 'preds'), exist_ok=True)
    classes = list(inferencer.model.dataset_meta['classes'])
    bar = ProgressBar(len(images), file=sys.stderr) if progress else None
    done, failed = 0, []
    for path in images:
        image = mmcv.imread(path)  # BGR, as the inferencers' loader expects
        if image is None:
            failed.append(f'{path!r} could not be decoded (a damaged or '
                          'truncated image?); skipped')
        else:
            if task == 'det':
                result = inferencer(image, return_vis=True,
                                    return_datasamples=True, no_save_vis=True,
                                    pred_score_thr=score_thr)
            else:
                # mmseg returns no drawing with data samples: its plain
                # result is the label map, all the record needs.
                result = inferencer(image, return_vis=True)
            # mmseg unwraps a single image's results, mmdet does not.
            sample, vis = result['predictions'], result['visualization']
            sample = sample[0] if isinstance(sample, list) else sample
            vis = vis[0] if isinstance(vis, list) else vis
            write_outputs(task, path, image, sample, vis, out_dir, classes,
                          score_thr)
            done += 1
        if bar is not None:
            bar.update()
    if bar is not None:
        sys.stderr.write('\n')
    return done, failed
