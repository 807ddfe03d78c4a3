# Copyright (c) convnext_backbone contributors. All rights reserved.
"""Deterministic toy datasets ("embedded default data").

This module renders small synthetic scenes of textured shapes so that the
detection and segmentation configs can be trained and evaluated on a CPU
without downloading COCO or ADE20K. It only depends on numpy, OpenCV and
pycocotools (no mmcv / mmdet / mmseg imports).

Two layouts are produced:

* ``generate_toy_coco`` - a COCO-format instance segmentation set (images and
  ``annotations/instances_{train,val}.json`` with RLE masks of the *visible*
  part of each object), readable by ``mmdet.datasets.CocoDataset``.
* ``generate_toy_ade`` - an ADE20K-layout semantic segmentation set
  (``images/{training,validation}/*.jpg`` and
  ``annotations/{training,validation}/*.png``) readable by
  ``mmseg.datasets.ADE20KDataset`` with ``reduce_zero_label=True``.

Every scene contains 1 to ``MAX_OBJECTS`` shapes. Each class has its own
colour family and texture (square: red/solid, circle: green/stripes,
triangle: blue/checker, star: yellow/dots) with random colour jitter, random
size (uniform in sqrt(size) between ``MIN_OBJ_SIZE_FRAC`` and
``MAX_OBJ_SIZE_FRAC`` of the shorter image side, i.e. 8 to 64 px at
128x128), random position and rotation. Later shapes occlude earlier ones;
shapes left with too little visible area are removed from the scene before
it is rendered, so every visible shape is annotated. Backgrounds are a
random low-saturation gradient plus low-frequency blotches and pixel noise.

Output is byte-for-byte deterministic for a given seed: every image draws
from its own ``numpy.random.default_rng([seed, set, split, index])``
stream, so an image does not depend on how many images are generated.
"""
import colorsys
import json
import logging
import os
import os.path as osp
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import pycocotools.mask as mask_util

logger = logging.getLogger(__name__)

#: Shape classes of the toy detection set (COCO ``category_id`` = index + 1).
TOY_DET_CLASSES: Tuple[str, ...] = ('square', 'circle', 'triangle', 'star')
#: RGB visualisation colour of each detection class (its colour family).
#: (A list of tuples, as mmdet's visualizer takes a tuple for one colour.)
TOY_DET_PALETTE: List[Tuple[int, int, int]] = [(220, 40, 40), (40, 170, 60),
                                               (40, 90, 220), (240, 190, 30)]
#: Classes of the toy semantic set after ``reduce_zero_label=True``.
TOY_SEG_CLASSES: Tuple[str, ...] = ('background', ) + TOY_DET_CLASSES
#: RGB visualisation colour of each semantic class.
TOY_SEG_PALETTE: List[Tuple[int, int, int]] = [(120, 120, 120)
                                               ] + TOY_DET_PALETTE

#: Texture of each detection class (same order as ``TOY_DET_CLASSES``).
TOY_DET_TEXTURES: Tuple[str, ...] = ('solid', 'stripes', 'checker', 'dots')
#: Hue centre (HSV, in [0, 1)) of each class colour family.
TOY_DET_HUES: Tuple[float, ...] = (0.0, 0.33, 0.61, 0.13)

DEFAULT_ROOT = 'data'
DEFAULT_SEED = 0
#: Default image size as (H, W).
DEFAULT_IMG_SIZE: Tuple[int, int] = (128, 128)
DEFAULT_NUM_TRAIN = 200
DEFAULT_NUM_VAL = 50
TOY_COCO_DIRNAME = 'toy_coco'
TOY_ADE_DIRNAME = 'toy_ade'

#: Minimum / maximum number of shapes drawn into a scene.
MIN_OBJECTS = 1
MAX_OBJECTS = 6
#: Object size range as a fraction of the shorter image side. Sizes are
#: drawn uniformly in sqrt(size), i.e. between log-uniform (too many tiny
#: objects to learn quickly) and uniform: at 128x128 about 20% of the shapes
#: are < 16 px and about 20% > 48 px, median ~30 px.
MIN_OBJ_SIZE_FRAC = 1 / 16
MAX_OBJ_SIZE_FRAC = 1 / 2
#: Shapes whose visible area (px) is below this are removed from the scene.
MIN_VISIBLE_AREA = 20
#: Shapes with less than this fraction of their area visible are removed.
MIN_VISIBLE_FRAC = 0.25
#: Semantic pixels whose dominant class covers less than this fraction of
#: the (anti-aliased) pixel are labelled 0 (ignored).
SEG_IGNORE_COVERAGE = 0.9
#: ADE label value of ignored pixels and offset of the classes
#: (``label = TOY_SEG_CLASSES.index(name) + 1``).
ADE_IGNORE_LABEL = 0

JPEG_QUALITY = 95
PNG_COMPRESSION = 3
_SUPERSAMPLE = 4
_SHIFT = 4  # fixed-point bits for cv2.fillPoly
_FORMAT_VERSION = 1
_COCO_STREAM = 1
_ADE_STREAM = 2
_FILE_RE = re.compile(r'^toy_\d{6}\.(jpg|png)$')

SizeType = Union[int, Sequence[int]]


def _parse_img_size(img_size: SizeType) -> Tuple[int, int]:
    """Normalise ``img_size`` to ``(H, W)``.

    Args:
        img_size (int | Sequence[int]): Square side or ``(H, W)``.

    Returns:
        tuple[int, int]: ``(H, W)``.
    """
    if isinstance(img_size, (int, np.integer)):
        h = w = int(img_size)
    else:
        size = tuple(int(s) for s in img_size)
        if len(size) == 1:
            size = size * 2
        if len(size) != 2:
            raise ValueError(f'img_size must be int or (H, W), got {img_size}')
        h, w = size
    if h < 32 or w < 32:
        raise ValueError(f'img_size must be at least 32x32, got {(h, w)}')
    return h, w


def _check_counts(seed: int, num_train: int, num_val: int) -> None:
    """Validate the seed and the split sizes."""
    if int(seed) < 0:
        raise ValueError(f'seed must be non-negative, got {seed}')
    if int(num_train) < 1 or int(num_val) < 1:
        raise ValueError('num_train and num_val must be >= 1, got '
                         f'{num_train} and {num_val}')


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """HSV in [0, 1] to an RGB float array in [0, 255]."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float64) * 255.0


# ----------------------------------------------------------------------------
# Scene rendering
# ----------------------------------------------------------------------------
def _shape_polygon(cls_idx: int, size: float, angle: float) -> np.ndarray:
    """Vertices of a shape centred at the origin.

    Args:
        cls_idx (int): Index into ``TOY_DET_CLASSES``.
        size (float): Nominal diameter in pixels (scaled per shape by
            0.9 to 1.2 to roughly balance the pixel areas).
        angle (float): Rotation in radians.

    Returns:
        np.ndarray: ``(N, 2)`` float vertices (x, y).
    """
    name = TOY_DET_CLASSES[cls_idx]
    r = size / 2.0
    # The square is shrunk and the triangle / star enlarged a little so that
    # the classes have more similar pixel areas (balances the semantic set).
    if name == 'square':
        r = r * 0.9
        pts = np.array([[-r, -r], [r, -r], [r, r], [-r, r]], np.float64)
    elif name == 'circle':
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], axis=1) * r
    elif name == 'triangle':
        t = np.array([0.0, 2.0, 4.0]) * np.pi / 3 - np.pi / 2
        pts = np.stack([np.cos(t), np.sin(t)], axis=1) * (r * 1.2)
    elif name == 'star':
        r = r * 1.15
        t = np.arange(10) * np.pi / 5 - np.pi / 2
        radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        pts = np.stack([np.cos(t), np.sin(t)], axis=1) * radii[:, None]
    else:  # pragma: no cover - guarded by TOY_DET_CLASSES
        raise ValueError(f'unknown shape {name}')
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return pts @ rot.T


def _render_coverage(pts: np.ndarray, h: int,
                     w: int) -> Optional[Tuple[np.ndarray, Tuple[int, int]]]:
    """Anti-aliased coverage of a polygon, computed in its bounding box.

    Pixel ``(i, j)`` covers the continuous square ``[j, j+1) x [i, i+1)``;
    coverage is the exact fraction of ``_SUPERSAMPLE**2`` sub-pixels inside.

    Args:
        pts (np.ndarray): ``(N, 2)`` vertices in image coordinates.
        h (int): Image height.
        w (int): Image width.

    Returns:
        tuple | None: ``(alpha, (y0, x0))`` with ``alpha`` a float32 ROI of
        coverage in [0, 1], or None if the polygon misses the image.
    """
    x0 = max(int(np.floor(pts[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(pts[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(pts[:, 0].max())) + 1, w)
    y1 = min(int(np.ceil(pts[:, 1].max())) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return None
    ss = _SUPERSAMPLE
    canvas = np.zeros(((y1 - y0) * ss, (x1 - x0) * ss), np.uint8)
    # sub-pixel k has its centre at x0 + (k + 0.5) / ss
    local = (pts - np.array([x0, y0])) * ss - 0.5
    fixed = np.round(local * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(canvas, [fixed], 255, lineType=cv2.LINE_8, shift=_SHIFT)
    alpha = canvas.reshape(y1 - y0, ss, x1 - x0, ss).astype(np.float32)
    alpha = alpha.mean(axis=(1, 3)) / 255.0
    return alpha, (y0, x0)


def _render_texture(rng: np.random.Generator, cls_idx: int,
                    roi_shape: Tuple[int, int], origin: Tuple[int, int],
                    center: Tuple[float, float], size: float,
                    angle: float) -> np.ndarray:
    """Colour/texture of an object over its ROI.

    Args:
        rng (np.random.Generator): Random stream of the image.
        cls_idx (int): Index into ``TOY_DET_CLASSES``.
        roi_shape (tuple[int, int]): ROI ``(h, w)``.
        origin (tuple[int, int]): ROI top-left ``(y0, x0)`` in the image.
        center (tuple[float, float]): Object centre ``(cx, cy)``.
        size (float): Nominal object size in pixels.
        angle (float): Object rotation in radians (the texture follows it).

    Returns:
        np.ndarray: ``(h, w, 3)`` float RGB in roughly [0, 255].
    """
    hue = TOY_DET_HUES[cls_idx] + rng.uniform(-0.04, 0.04)
    sat = rng.uniform(0.55, 1.0)
    val = rng.uniform(0.6, 1.0)
    c1 = _hsv_to_rgb(hue, sat, val)
    c2 = _hsv_to_rgb(hue, sat * rng.uniform(0.5, 1.0),
                     val * rng.uniform(0.25, 0.5))
    rh, rw = roi_shape
    ys = np.arange(rh, dtype=np.float64)[:, None] + origin[0] + 0.5
    xs = np.arange(rw, dtype=np.float64)[None, :] + origin[1] + 0.5
    dx, dy = xs - center[0], ys - center[1]
    ca, sa = np.cos(angle), np.sin(angle)
    u = dx * ca + dy * sa
    v = -dx * sa + dy * ca
    texture = TOY_DET_TEXTURES[cls_idx]
    if texture == 'solid':
        # flat colour with a soft linear shading across the object
        shade = rng.uniform(-0.3, 0.3)
        weight = np.clip(1.0 + shade * u / max(size, 1.0), 0.5, 1.5)
        return c1[None, None, :] * weight[..., None]
    if texture == 'stripes':
        period = rng.uniform(3.0, 6.0)
        phase = rng.uniform(0, 1)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (u / period + phase))
    elif texture == 'checker':
        cell = rng.uniform(2.0, 4.0)
        off_u, off_v = rng.uniform(0, cell, size=2)
        t = ((np.floor((u + off_u) / cell) + np.floor(
            (v + off_v) / cell)) % 2).astype(np.float64)
    elif texture == 'dots':
        period = rng.uniform(3.5, 6.0)
        off_u, off_v = rng.uniform(0, period, size=2)
        du = (u + off_u) % period - period / 2
        dv = (v + off_v) % period - period / 2
        radius = period * rng.uniform(0.25, 0.35)
        t = (np.sqrt(du**2 + dv**2) > radius).astype(np.float64)
    else:  # pragma: no cover - guarded by TOY_DET_TEXTURES
        raise ValueError(f'unknown texture {texture}')
    return (c1[None, None, :] * t[..., None] + c2[None, None, :] *
            (1.0 - t[..., None]))


def _render_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Gradient + low-frequency blotches + pixel noise, float RGB."""
    c_a = _hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.35),
                      rng.uniform(0.3, 0.9))
    c_b = _hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.35),
                      rng.uniform(0.3, 0.9))
    theta = rng.uniform(0, 2 * np.pi)
    ys = (np.arange(h, dtype=np.float64)[:, None] + 0.5) / h - 0.5
    xs = (np.arange(w, dtype=np.float64)[None, :] + 0.5) / w - 0.5
    t = np.clip(xs * np.cos(theta) + ys * np.sin(theta) + 0.5, 0, 1)
    bg = c_a[None, None] * (1 - t[..., None]) + c_b[None, None] * t[..., None]
    grid = rng.integers(3, 7)
    low = rng.normal(0, rng.uniform(5, 25), size=(grid, grid, 3))
    low = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    bg = bg + low + rng.normal(0, rng.uniform(2, 10), size=(h, w, 3))
    return bg


def _render_scene(
        rng: np.random.Generator,
        img_size: Tuple[int, int]) -> Tuple[np.ndarray, list, np.ndarray]:
    """Render one scene.

    Args:
        rng (np.random.Generator): Random stream of this image.
        img_size (tuple[int, int]): ``(H, W)``.

    Returns:
        tuple: ``(img, instances, seg)`` where ``img`` is an ``(H, W, 3)``
        uint8 RGB image, ``instances`` a list of ``(cls_idx, mask)`` with the
        boolean *visible* mask of each shape (drawing order), and ``seg`` an
        ``(H, W)`` uint8 ADE-style label map (0 ignore, 1 background,
        ``2 + cls_idx`` shapes).
    """
    h, w = img_size
    short = min(h, w)
    min_size = MIN_OBJ_SIZE_FRAC * short
    max_size = MAX_OBJ_SIZE_FRAC * short
    objects: List[dict] = []
    for _ in range(100):
        num = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
        objects = []
        for _ in range(num):
            cls_idx = int(rng.integers(len(TOY_DET_CLASSES)))
            size = float(rng.uniform(np.sqrt(min_size), np.sqrt(max_size))**2)
            margin = 0.3 * size
            cx = rng.uniform(margin, w - margin)
            cy = rng.uniform(margin, h - margin)
            angle = rng.uniform(0, 2 * np.pi)
            pts = _shape_polygon(cls_idx, size, angle) + np.array([cx, cy])
            rendered = _render_coverage(pts, h, w)
            if rendered is None:
                continue
            alpha_roi, (y0, x0) = rendered
            alpha = np.zeros((h, w), np.float32)
            alpha[y0:y0 + alpha_roi.shape[0],
                  x0:x0 + alpha_roi.shape[1]] = alpha_roi
            objects.append(
                dict(
                    cls_idx=cls_idx,
                    size=size,
                    center=(cx, cy),
                    angle=angle,
                    alpha=alpha,
                    roi=(y0, x0, alpha_roi.shape[0], alpha_roi.shape[1]),
                    mask=alpha >= 0.5))
        # Remove shapes that end up (almost) hidden. Removing a shape only
        # uncovers the others, so a single pass is enough.
        top = np.full((h, w), -1, np.int32)
        for k, obj in enumerate(objects):
            top[obj['mask']] = k
        kept = []
        for k, obj in enumerate(objects):
            full = int(obj['mask'].sum())
            vis = int((top == k).sum())
            if vis >= MIN_VISIBLE_AREA and vis >= MIN_VISIBLE_FRAC * full:
                kept.append(obj)
        objects = kept
        if objects:
            break
    if not objects:  # pragma: no cover - practically unreachable
        raise RuntimeError('failed to place any object')

    img = _render_background(rng, h, w)
    num_seg = len(TOY_SEG_CLASSES)
    coverage = np.zeros((h, w, num_seg), np.float32)
    coverage[..., 0] = 1.0
    top = np.full((h, w), -1, np.int32)
    for k, obj in enumerate(objects):
        y0, x0, rh, rw = obj['roi']
        tex = _render_texture(rng, obj['cls_idx'], (rh, rw), (y0, x0),
                              obj['center'], obj['size'], obj['angle'])
        a = obj['alpha'][y0:y0 + rh, x0:x0 + rw, None].astype(np.float64)
        img[y0:y0 + rh, x0:x0 + rw] = (
            img[y0:y0 + rh, x0:x0 + rw] * (1.0 - a) + tex * a)
        cov = coverage[y0:y0 + rh, x0:x0 + rw]
        cov *= (1.0 - a.astype(np.float32))
        cov[..., obj['cls_idx'] + 1] += a[..., 0].astype(np.float32)
        top[obj['mask']] = k
    img = img + rng.normal(0, 3.0, size=img.shape)
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)

    instances = [(obj['cls_idx'], top == k) for k, obj in enumerate(objects)]
    seg = (np.argmax(coverage, axis=2) + 1).astype(np.uint8)
    seg[coverage.max(axis=2) < SEG_IGNORE_COVERAGE] = ADE_IGNORE_LABEL
    return img, instances, seg


# ----------------------------------------------------------------------------
# File helpers
# ----------------------------------------------------------------------------
def _write_image(path: str, img_rgb: np.ndarray) -> None:
    """Write an RGB image as JPEG (fixed quality) or PNG."""
    bgr = cv2.cvtColor(img_rgb, cv2.COLOR_RGB2BGR)
    if path.endswith('.png'):
        params = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
    else:
        params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    if not cv2.imwrite(path, bgr, params):
        raise IOError(f'failed to write {path}')


def _write_label(path: str, label: np.ndarray) -> None:
    """Write a single-channel uint8 PNG label map."""
    if not cv2.imwrite(path, label,
                       [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]):
        raise IOError(f'failed to write {path}')


def _file_name(idx: int, ext: str) -> str:
    return f'toy_{idx:06d}.{ext}'


def _clean_stale(dir_path: str, keep: Sequence[str]) -> None:
    """Remove generator-named files in ``dir_path`` that are not in ``keep``.

    Keeps the set consistent when it is regenerated with fewer images (mmseg
    lists image directories, so stale files would leak into the set).
    """
    keep_set = set(keep)
    for name in sorted(os.listdir(dir_path)):
        if _FILE_RE.match(name) and name not in keep_set:
            os.remove(osp.join(dir_path, name))


def _write_json(path: str, obj: dict) -> None:
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f, separators=(',', ':'))


def _meta(kind: str, seed: int, num_train: int, num_val: int,
          img_size: Tuple[int, int]) -> dict:
    return dict(
        generator='tools/lib/toy_data.py',
        kind=kind,
        version=_FORMAT_VERSION,
        seed=int(seed),
        num_train=int(num_train),
        num_val=int(num_val),
        img_size=[int(img_size[0]), int(img_size[1])])


def _read_meta(path: str) -> Optional[dict]:
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _summary(out_dir: str, classes: Sequence[str], img_size: Tuple[int, int],
             paths: Dict[str, str], **fields: Any) -> dict:
    """A set's summary: ``root``, ``classes``, ``img_size``, ``fields`` and
    its paths but the meta file, in this order (the generator tool prints
    it as it is)."""
    data_paths = {k: v for k, v in paths.items() if k != 'meta_file'}
    return dict(
        root=out_dir, classes=classes, img_size=img_size, **fields,
        **data_paths)


def _set_complete(paths: Dict[str, str], meta: dict,
                  image_files: Sequence[Tuple[str, str]],
                  other_files: Sequence[str] = ()) -> bool:
    """Whether the set at ``paths`` exists with exactly ``meta``: its meta
    file holds ``meta`` and all its files are there.

    Args:
        paths (dict[str, str]): The set's paths, as :func:`toy_coco_paths`
            / :func:`toy_ade_paths` give them.
        meta (dict): As :func:`_meta` writes it.
        image_files (Sequence[tuple[str, str]]): ``(dir_key, ext)`` for
            each file an image has: for each split and image index ``i``,
            ``paths[f'{split}_{dir_key}']/toy_<i>.<ext>`` must exist.
        other_files (Sequence[str]): Keys of further files in ``paths``
            that must exist. Defaults to ().
    """
    if _read_meta(paths['meta_file']) != meta:
        return False
    files = [paths[key] for key in other_files]
    files += [
        osp.join(paths[f'{split}_{dir_key}'], _file_name(idx, ext))
        for split in ('train', 'val') for idx in range(meta[f'num_{split}'])
        for dir_key, ext in image_files
    ]
    return all(osp.isfile(f) for f in files)


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------
def toy_coco_paths(out_dir: str) -> Dict[str, str]:
    """Paths of a toy COCO set.

    Args:
        out_dir (str): Root of the set, e.g. ``data/toy_coco``.

    Returns:
        dict[str, str]: ``train_img_dir``, ``val_img_dir``,
        ``train_ann_file``, ``val_ann_file`` and ``meta_file``.
    """
    return dict(
        train_img_dir=osp.join(out_dir, 'train'),
        val_img_dir=osp.join(out_dir, 'val'),
        train_ann_file=osp.join(out_dir, 'annotations',
                                'instances_train.json'),
        val_ann_file=osp.join(out_dir, 'annotations', 'instances_val.json'),
        meta_file=osp.join(out_dir, 'meta.json'))


def toy_cfg_options(out_dir: str, coco: bool) -> Dict[str, str]:
    """``--cfg-options`` pointing a ``configs/toy`` config at a set here.

    Args:
        out_dir (str): Root of a toy set (as written by
            :func:`generate_toy_coco` or :func:`generate_toy_ade`).
        coco (bool): A COCO set: its COCO metrics read the val annotation
            file too.

    Returns:
        dict[str, str]: Dotted config keys and values, as ``tools/train.py
        --cfg-options`` takes them (``key=value``) or
        ``tools.lib.prepare.prepare_train_cfg(cfg_options=...)``.
    """
    root = osp.join(out_dir, '')  # data_root ends with a separator
    options = {f'{split}_dataloader.dataset.data_root': root
               for split in ('train', 'val', 'test')}
    if coco:
        ann_file = toy_coco_paths(out_dir)['val_ann_file']
        options.update({'val_evaluator.ann_file': ann_file,
                        'test_evaluator.ann_file': ann_file})
    return options


def toy_ade_paths(out_dir: str) -> Dict[str, str]:
    """Paths of a toy ADE20K-layout set.

    Args:
        out_dir (str): Root of the set, e.g. ``data/toy_ade``.

    Returns:
        dict[str, str]: ``train_img_dir``, ``val_img_dir``,
        ``train_ann_dir``, ``val_ann_dir`` and ``meta_file``.
    """
    return dict(
        train_img_dir=osp.join(out_dir, 'images', 'training'),
        val_img_dir=osp.join(out_dir, 'images', 'validation'),
        train_ann_dir=osp.join(out_dir, 'annotations', 'training'),
        val_ann_dir=osp.join(out_dir, 'annotations', 'validation'),
        meta_file=osp.join(out_dir, 'meta.json'))


def generate_toy_coco(out_dir: str,
                      seed: int = DEFAULT_SEED,
                      num_train: int = DEFAULT_NUM_TRAIN,
                      num_val: int = DEFAULT_NUM_VAL,
                      img_size: SizeType = DEFAULT_IMG_SIZE) -> dict:
    """Write a COCO-format toy instance segmentation set.

    Layout: ``out_dir/{train,val}/toy_XXXXXX.jpg`` and
    ``out_dir/annotations/instances_{train,val}.json``. Masks are stored as
    compressed RLE (``counts`` as str) of the visible part of each shape;
    ``bbox`` ([x, y, w, h]) and ``area`` are computed from that RLE with
    pycocotools, ``iscrowd`` is 0 and ``category_id`` is 1-based.

    Args:
        out_dir (str): Output root directory.
        seed (int): Non-negative random seed. Defaults to 0.
        num_train (int): Number of training images. Defaults to 200.
        num_val (int): Number of validation images. Defaults to 50.
        img_size (int | Sequence[int]): Image size as ``(H, W)`` or a
            square side. Defaults to (128, 128).

    Returns:
        dict: Summary with the paths (see :func:`toy_coco_paths`), ``root``,
        ``classes``, ``img_size``, ``num_train``/``num_val`` (images),
        ``num_train_instances``/``num_val_instances``.
    """
    h, w = _parse_img_size(img_size)
    _check_counts(seed, num_train, num_val)
    paths = toy_coco_paths(out_dir)
    os.makedirs(osp.dirname(paths['train_ann_file']), exist_ok=True)
    categories = [
        dict(id=i + 1, name=name, supercategory='shape')
        for i, name in enumerate(TOY_DET_CLASSES)
    ]
    summary = _summary(out_dir, TOY_DET_CLASSES, (h, w), paths)
    for split_id, (split, num) in enumerate(
        (('train', num_train), ('val', num_val))):
        img_dir = paths[f'{split}_img_dir']
        os.makedirs(img_dir, exist_ok=True)
        images, annotations, names = [], [], []
        for idx in range(int(num)):
            rng = np.random.default_rng(
                [int(seed), _COCO_STREAM, split_id, idx])
            img, instances, _ = _render_scene(rng, (h, w))
            name = _file_name(idx, 'jpg')
            names.append(name)
            _write_image(osp.join(img_dir, name), img)
            img_id = idx + 1
            images.append(dict(id=img_id, file_name=name, width=w, height=h))
            for cls_idx, mask in instances:
                rle = mask_util.encode(
                    np.asfortranarray(mask.astype(np.uint8)))
                bbox = [float(v) for v in mask_util.toBbox(rle)]
                area = float(mask_util.area(rle))
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=img_id,
                        category_id=cls_idx + 1,
                        segmentation=dict(
                            size=[int(s) for s in rle['size']],
                            counts=rle['counts'].decode('ascii')),
                        area=area,
                        bbox=bbox,
                        iscrowd=0))
        _clean_stale(img_dir, names)
        coco = dict(
            info=dict(
                description='convnext_backbone toy shapes (COCO format)',
                version=str(_FORMAT_VERSION),
                year=2024,
                seed=int(seed)),
            licenses=[],
            images=images,
            annotations=annotations,
            categories=categories)
        _write_json(paths[f'{split}_ann_file'], coco)
        summary[f'num_{split}'] = len(images)
        summary[f'num_{split}_instances'] = len(annotations)
    _write_json(paths['meta_file'],
                _meta('coco', seed, num_train, num_val, (h, w)))
    logger.info('Wrote toy COCO set to %s (%d train / %d val images)', out_dir,
                summary['num_train'], summary['num_val'])
    return summary


def generate_toy_ade(out_dir: str,
                     seed: int = DEFAULT_SEED,
                     num_train: int = DEFAULT_NUM_TRAIN,
                     num_val: int = DEFAULT_NUM_VAL,
                     img_size: SizeType = DEFAULT_IMG_SIZE) -> dict:
    """Write an ADE20K-layout toy semantic segmentation set.

    Layout: ``out_dir/images/{training,validation}/toy_XXXXXX.jpg`` and
    ``out_dir/annotations/{training,validation}/toy_XXXXXX.png``
    (single-channel uint8). Labels follow ADE20K: 0 = ignored (only at
    anti-aliased shape boundaries, rare), 1 = background and
    ``2 + i`` = ``TOY_DET_CLASSES[i]``, so with ``reduce_zero_label=True``
    the classes are exactly ``TOY_SEG_CLASSES``.

    Args:
        out_dir (str): Output root directory.
        seed (int): Non-negative random seed. Defaults to 0.
        num_train (int): Number of training images. Defaults to 200.
        num_val (int): Number of validation images. Defaults to 50.
        img_size (int | Sequence[int]): Image size as ``(H, W)`` or a
            square side. Defaults to (128, 128).

    Returns:
        dict: Summary with the paths (see :func:`toy_ade_paths`), ``root``,
        ``classes``, ``img_size``, ``num_train``/``num_val``,
        ``ignore_fraction`` (share of label-0 pixels).
    """
    h, w = _parse_img_size(img_size)
    _check_counts(seed, num_train, num_val)
    paths = toy_ade_paths(out_dir)
    summary = _summary(out_dir, TOY_SEG_CLASSES, (h, w), paths)
    ignored = total = 0
    for split_id, (split, num) in enumerate(
        (('train', num_train), ('val', num_val))):
        img_dir = paths[f'{split}_img_dir']
        ann_dir = paths[f'{split}_ann_dir']
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        img_names, ann_names = [], []
        for idx in range(int(num)):
            rng = np.random.default_rng(
                [int(seed), _ADE_STREAM, split_id, idx])
            img, _, seg = _render_scene(rng, (h, w))
            img_names.append(_file_name(idx, 'jpg'))
            ann_names.append(_file_name(idx, 'png'))
            _write_image(osp.join(img_dir, img_names[-1]), img)
            _write_label(osp.join(ann_dir, ann_names[-1]), seg)
            ignored += int((seg == ADE_IGNORE_LABEL).sum())
            total += seg.size
        _clean_stale(img_dir, img_names)
        _clean_stale(ann_dir, ann_names)
        summary[f'num_{split}'] = int(num)
    summary['ignore_fraction'] = ignored / max(total, 1)
    _write_json(paths['meta_file'],
                _meta('ade', seed, num_train, num_val, (h, w)))
    logger.info('Wrote toy ADE set to %s (%d train / %d val images)', out_dir,
                summary['num_train'], summary['num_val'])
    return summary


def _coco_complete(out_dir: str, meta: dict) -> bool:
    """Whether a toy COCO set with exactly ``meta`` exists in ``out_dir``."""
    return _set_complete(
        toy_coco_paths(out_dir), meta, [('img_dir', 'jpg')],
        other_files=['train_ann_file', 'val_ann_file'])


def _ade_complete(out_dir: str, meta: dict) -> bool:
    """Whether a toy ADE set with exactly ``meta`` exists in ``out_dir``."""
    return _set_complete(toy_ade_paths(out_dir), meta, [('img_dir', 'jpg'),
                                                        ('ann_dir', 'png')])


def generate_toy_data(root: str = DEFAULT_ROOT,
                      seed: int = DEFAULT_SEED,
                      num_train: int = DEFAULT_NUM_TRAIN,
                      num_val: int = DEFAULT_NUM_VAL,
                      img_size: SizeType = DEFAULT_IMG_SIZE,
                      overwrite: bool = False,
                      coco: bool = True,
                      ade: bool = True) -> dict:
    """Generate both toy sets into ``root/toy_coco`` and ``root/toy_ade``.

    A set is skipped when it already exists with the same parameters (its
    ``meta.json`` matches and all files are present). A set generated with
    other parameters (or incomplete) is regenerated.

    Args:
        root (str): Data root. Defaults to 'data'.
        seed (int): Non-negative random seed. Defaults to 0.
        num_train (int): Training images per set. Defaults to 200.
        num_val (int): Validation images per set. Defaults to 50.
        img_size (int | Sequence[int]): Image size as ``(H, W)`` or a
            square side. Defaults to (128, 128).
        overwrite (bool): Regenerate even if an identical set exists.
            Defaults to False.
        coco (bool): Generate the COCO-format set. Defaults to True.
        ade (bool): Generate the ADE20K-layout set. Defaults to True.

    Returns:
        dict: ``{'coco': summary, 'ade': summary}`` for the requested sets
        (see :func:`generate_toy_coco` and :func:`generate_toy_ade`) with
        ``skipped``: whether it already existed. A skipped set's summary
        has only paths, classes, img_size and image counts.
    """
    size = _parse_img_size(img_size)
    _check_counts(seed, num_train, num_val)
    results = {}
    jobs = []
    if coco:
        jobs.append(('coco', TOY_COCO_DIRNAME, generate_toy_coco,
                     _coco_complete, toy_coco_paths, TOY_DET_CLASSES))
    if ade:
        jobs.append(('ade', TOY_ADE_DIRNAME, generate_toy_ade, _ade_complete,
                     toy_ade_paths, TOY_SEG_CLASSES))
    for kind, dirname, generate, complete, get_paths, classes in jobs:
        out_dir = osp.join(root, dirname)
        meta = _meta(kind, seed, num_train, num_val, size)
        if not overwrite and complete(out_dir, meta):
            logger.info('Toy %s set already exists at %s, skipping', kind,
                        out_dir)
            results[kind] = _summary(
                out_dir, classes, size, get_paths(out_dir),
                num_train=int(num_train), num_val=int(num_val), skipped=True)
            continue
        if osp.isfile(get_paths(out_dir)['meta_file']) and not overwrite:
            logger.warning(
                'Toy %s set at %s was generated with other parameters or '
                'is incomplete; regenerating it', kind, out_dir)
        results[kind] = dict(
            generate(out_dir, seed=seed, num_train=num_train,
                     num_val=num_val, img_size=size),
            skipped=False)
    return results
