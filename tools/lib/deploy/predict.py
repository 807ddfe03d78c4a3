#!/usr/bin/env python3
"""Predict with a deploy bundle: ``end2end.onnx`` + ``bundle.json`` + this
script. Needs numpy, onnxruntime and OpenCV only:

    pip install onnxruntime numpy opencv-python-headless
    python predict.py IMAGE_OR_FOLDER... --out-dir DIR [--score-thr 0.3]

For each image ``a.jpg`` it writes ``DIR/preds/a.json`` (the schema of the
training repository's ``tools/infer.py``: detection, box / score / label /
class and mask as COCO RLE per instance; segmentation, the classes of the
label map with their pixel counts), for segmentation ``DIR/preds/a.png``
(the label map, class index per pixel), and ``DIR/vis/a.jpg`` (the
predictions drawn). A damaged image is skipped with a message (exit
status 1 at the end).

From Python: ``Predictor(BUNDLE_DIR)(image)`` returns the raw predictions
of a BGR uint8 image (``boxes``, ``scores``, ``labels``, ``masks``, or
``label_map``).

The graph holds the network and the post-processing up to the per-
detection 28 x 28 mask probabilities; this script does what an image
library does better than a graph: decoding, resizing (OpenCV's bilinear,
as mmcv), normalising and padding before, pasting the masks into the image
after (a pasted mask is an H x W array per detection: too much memory in a
graph output).
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

HERE = osp.dirname(osp.abspath(__file__))
BUNDLE_JSON = 'bundle.json'
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                  '.tiff', '.webp')
#: OpenCV's codes of mmcv's interpolation names.
INTERPOLATIONS = {'nearest': 0, 'bilinear': 1, 'bicubic': 2, 'area': 3,
                  'lanczos': 4}


class BundleError(Exception):
    """An input or a bundle this script cannot use; the message says which
    and what to do (printed as one ``error:`` line)."""


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as err:
        raise BundleError('OpenCV is not installed: pip install '
                          'opencv-python-headless') from err
    return cv2


# ------------------------------------------------------------- images
def read_image(path: str) -> Optional[np.ndarray]:
    """The image as BGR uint8 (OpenCV's decoder with IMREAD_COLOR, as
    mmcv's ``LoadImageFromFile``), or None when it cannot be decoded."""
    cv2 = _cv2()
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def collect_images(inputs: Sequence[str]) -> List[str]:
    """Image files named by ``inputs`` in order: a file as it is, a folder
    as its image files (by extension, sorted, not recursive).

    Raises:
        BundleError: A missing input, a folder without images, a file
            that is not an image format, or two images with the same name
            (their outputs would overwrite each other).
    """
    images: List[str] = []
    for path in inputs:
        if osp.isdir(path):
            found = sorted(
                osp.join(path, name) for name in os.listdir(path)
                if name.lower().endswith(IMG_EXTENSIONS)
                and osp.isfile(osp.join(path, name)))
            if not found:
                raise BundleError(f'folder {path!r} holds no image (looked '
                                  f"for {', '.join(IMG_EXTENSIONS)})")
            images += found
        elif osp.isfile(path):
            if not path.lower().endswith(IMG_EXTENSIONS):
                raise BundleError(
                    f'{path!r} is not an image file (formats: '
                    f"{', '.join(IMG_EXTENSIONS)})")
            images.append(path)
        else:
            raise BundleError(f'input {path!r} does not exist (give image '
                              'files or folders of images)')
    stems: Dict[str, str] = {}
    for path in images:
        stem = osp.splitext(osp.basename(path))[0]
        if stem in stems:
            raise BundleError(f'{stems[stem]!r} and {path!r} would write '
                              f'the same outputs ({stem}.*); run them with '
                              'different --out-dir')
        stems[stem] = path
    return images


# ------------------------------------------------------- preprocessing
def resize(image: np.ndarray, spec: Dict[str, Any]
           ) -> Tuple[np.ndarray, Tuple[float, float]]:
    """mmcv's ``Resize``: ``imrescale`` (keep_ratio) or ``imresize`` to
    ``scale`` (w, h); returns the image and ``(w_scale, h_scale)``."""
    cv2 = _cv2()
    h, w = image.shape[:2]
    scale = spec['scale']
    if spec['keep_ratio']:
        factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
        new_w, new_h = int(w * factor + 0.5), int(h * factor + 0.5)
    else:
        new_w, new_h = scale
    out = cv2.resize(image, (new_w, new_h),
                     interpolation=INTERPOLATIONS[spec['interpolation']])
    return out, (new_w / w, new_h / h)


def preprocess(image: np.ndarray, spec: Dict[str, Any]
               ) -> Tuple[np.ndarray, Dict[str, Any]]:
    """The test pipeline and the data preprocessor: resize, channel order,
    ``(x - mean) / std`` in float32, padding at the bottom and right.

    Returns:
        tuple: The (1, 3, H, W) float32 input, and ``img_shape``,
        ``ori_shape``, ``scale_factor``.
    """
    ori_shape = image.shape[:2]
    scale_factor = (1.0, 1.0)
    if spec.get('resize'):
        image, scale_factor = resize(image, spec['resize'])
    img_shape = image.shape[:2]
    x = image.transpose(2, 0, 1)
    if spec['bgr_to_rgb']:
        x = x[::-1]
    x = x.astype(np.float32)
    mean = np.asarray(spec['mean'], np.float32).reshape(3, 1, 1)
    std = np.asarray(spec['std'], np.float32).reshape(3, 1, 1)
    x = (x - mean) / std
    h, w = img_shape
    if spec.get('pad_size'):
        ph, pw = spec['pad_size']
    else:
        div = spec.get('pad_size_divisor') or 1
        ph, pw = -(-h // div) * div, -(-w // div) * div
    if (ph, pw) != (h, w):
        padded = np.full((3, max(ph, h), max(pw, w)), spec['pad_value'],
                         np.float32)
        padded[:, :h, :w] = x
        x = padded
    return np.ascontiguousarray(x[None]), dict(
        img_shape=img_shape, ori_shape=ori_shape, scale_factor=scale_factor)


# ------------------------------------------------------- postprocessing
def paste_masks(probs: np.ndarray, boxes: np.ndarray, height: int,
                width: int, threshold: float) -> np.ndarray:
    """mmdet's ``_do_paste_mask`` as on CPU (each mask sampled bilinearly,
    ``grid_sample(align_corners=False)``, over the box's pixels plus one),
    thresholded: (D, height, width) bool."""
    out = np.zeros((len(probs), height, width), dtype=bool)
    one, two, half = np.float32(1), np.float32(2), np.float32(0.5)
    for n, (mask, box) in enumerate(zip(probs.astype(np.float32),
                                        boxes.astype(np.float32))):
        x0i = int(max(np.floor(box[0]) - 1, 0))
        y0i = int(max(np.floor(box[1]) - 1, 0))
        x1i = int(min(np.ceil(box[2]) + 1, width))
        y1i = int(min(np.ceil(box[3]) + 1, height))
        if x1i <= x0i or y1i <= y0i:
            continue
        with np.errstate(divide='ignore', invalid='ignore'):
            gy = (np.arange(y0i, y1i, dtype=np.float32) + half - box[1]) / \
                (box[3] - box[1]) * two - one
            gx = (np.arange(x0i, x1i, dtype=np.float32) + half - box[0]) / \
                (box[2] - box[0]) * two - one
        gy[np.isinf(gy)], gx[np.isinf(gx)] = 0, 0  # mmdet's zero-size boxes
        mh, mw = mask.shape
        iy = ((gy + one) * mh - one) / two
        ix = ((gx + one) * mw - one) / two
        y0, x0 = np.floor(iy), np.floor(ix)
        wy, wx = iy - y0, ix - x0
        y0, x0 = y0.astype(np.int64), x0.astype(np.int64)
        pad = np.zeros((mh + 2, mw + 2), np.float32)
        pad[1:-1, 1:-1] = mask

        def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
            yy = np.clip(yy + 1, 0, mh + 1)
            xx = np.clip(xx + 1, 0, mw + 1)
            return pad[yy[:, None], xx[None, :]]

        value = (at(y0, x0) * ((1 - wy)[:, None] * (1 - wx)[None, :]) +
                 at(y0, x0 + 1) * ((1 - wy)[:, None] * wx[None, :]) +
                 at(y0 + 1, x0) * (wy[:, None] * (1 - wx)[None, :]) +
                 at(y0 + 1, x0 + 1) * (wy[:, None] * wx[None, :]))
        out[n, y0i:y1i, x0i:x1i] = value >= threshold
    return out


def rle_encode(mask: np.ndarray) -> Dict[str, Any]:
    """COCO's compressed RLE of a binary (H, W) mask, as pycocotools'
    ``mask.encode`` writes it (column-major runs, first of zeros)."""
    h, w = mask.shape
    flat = np.asarray(mask, dtype=np.uint8).T.reshape(-1)
    if flat.size:
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
        if flat[0]:
            runs = [0] + runs
    else:
        runs = []
    chars = []
    for i, x in enumerate(runs):
        if i > 2:
            x -= runs[i - 2]
        more = True
        while more:
            c = x & 0x1f
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return dict(size=[int(h), int(w)], counts=''.join(chars))


class Predictor:
    """The bundle's graph in onnxruntime with its pre- and post-processing.

    Args:
        bundle_dir (str): The folder with ``bundle.json`` and the graph.
        threads (int, optional): onnxruntime intra-op threads (default:
            onnxruntime's).
        providers (list[str], optional): Execution providers (default: all
            that onnxruntime has, e.g. CUDA before CPU).
    """

    def __init__(self, bundle_dir: str = HERE,
                 threads: Optional[int] = None,
                 providers: Optional[Sequence[str]] = None) -> None:
        path = osp.join(bundle_dir, BUNDLE_JSON)
        if not osp.isfile(path):
            raise BundleError(f'{path!r} does not exist: give the folder '
                              'tools/deploy.py wrote')
        with open(path) as f:
            self.spec = json.load(f)
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BundleError('onnxruntime is not installed: pip install '
                              'onnxruntime') from err
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            osp.join(bundle_dir, self.spec['graph']), options,
            providers=list(providers or ort.get_available_providers()))
        self.input_types = {i.name: i.type for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.task = self.spec['task']
        self.classes = list(self.spec['classes'])
        self.palette = [tuple(p) for p in self.spec['palette']]

    def feeds(self, image: np.ndarray) -> Tuple[Dict[str, np.ndarray],
                                                 Dict[str, Any]]:
        """The graph's inputs for a BGR image, and the image's shapes."""
        spec = self.spec['preprocess']
        inputs, meta = preprocess(image, spec)
        static = spec.get('static_input')
        if static and list(inputs.shape[2:]) != list(static):
            raise BundleError(
                f'the graph takes inputs of {static[0]} x {static[1]} only '
                f'(exported with --shape); this image gives '
                f'{inputs.shape[2]} x {inputs.shape[3]} after resizing and '
                'padding: export again with --shape '
                f'{inputs.shape[2]} {inputs.shape[3]}')
        values = dict(inputs=inputs, img_shape=meta['img_shape'],
                      ori_shape=meta['ori_shape'],
                      scale_factor=meta['scale_factor'])
        feeds = {}
        for name, kind in self.input_types.items():
            dtype = np.int64 if 'int64' in kind else np.float32
            feeds[name] = np.asarray(values[name], dtype=dtype)
        return feeds, meta

    def __call__(self, image: np.ndarray) -> Dict[str, np.ndarray]:
        """Raw predictions of a BGR uint8 image: ``boxes`` (D, 4, x1 y1 x2
        y2 in image pixels), ``scores``, ``labels`` and, for instance
        models, ``masks`` (D, H, W bool); or ``label_map`` (H, W)."""
        feeds, meta = self.feeds(image)
        outs = dict(zip(self.outputs, self.session.run(None, feeds)))
        if self.task == 'seg':
            return dict(label_map=outs['labels'])
        result = dict(boxes=outs['boxes'], scores=outs['scores'],
                      labels=outs['labels'])
        if 'masks' in outs:
            h, w = meta['ori_shape']
            result['masks'] = paste_masks(outs['masks'], outs['boxes'], h, w,
                                          self.spec['mask_thr_binary'])
        return result

    # --------------------------------------------------- records, drawing
    def class_name(self, label: int) -> str:
        return self.classes[label] if label < len(self.classes) else \
            str(label)

    def det_record(self, pred: Dict[str, np.ndarray],
                   score_thr: float) -> Dict[str, Any]:
        keep = pred['scores'] >= score_thr
        instances = []
        for i in np.flatnonzero(keep):
            label = int(pred['labels'][i])
            item = dict(label=label, class_name=self.class_name(label),
                        score=round(float(pred['scores'][i]), 5),
                        bbox=[round(float(v), 2) for v in pred['boxes'][i]])
            if 'masks' in pred:
                item['mask'] = rle_encode(pred['masks'][i])
            instances.append(item)
        return dict(task='det', score_thr=score_thr, instances=instances)

    def seg_record(self, label_map: np.ndarray) -> Dict[str, Any]:
        values, counts = np.unique(label_map, return_counts=True)
        found = sorted(zip(values.tolist(), counts.tolist()),
                       key=lambda vc: (-vc[1], vc[0]))
        return dict(task='seg', classes=[
            dict(label=int(v), class_name=self.class_name(int(v)),
                 pixels=int(c)) for v, c in found])

    def color(self, label: int) -> Tuple[int, int, int]:
        r, g, b = self.palette[label % len(self.palette)] if self.palette \
            else (255, 0, 0)
        return int(b), int(g), int(r)  # palettes are RGB, drawing BGR

    def draw(self, image: np.ndarray, pred: Dict[str, np.ndarray],
             score_thr: float) -> np.ndarray:
        """The predictions drawn on the BGR image: masks and boxes with
        class and score, or the label map's colours over the image."""
        cv2 = _cv2()
        out = image.copy()
        if self.task == 'seg':
            colors = np.array([self.color(i) for i in range(
                max(len(self.classes), int(pred['label_map'].max()) + 1))],
                np.uint8)
            overlay = colors[pred['label_map']]
            return cv2.addWeighted(out, 0.5, overlay, 0.5, 0)
        for i in np.flatnonzero(pred['scores'] >= score_thr):
            color = self.color(int(pred['labels'][i]))
            if 'masks' in pred:
                m = pred['masks'][i]
                out[m] = (0.5 * out[m] + 0.5 * np.array(color)).astype(
                    np.uint8)
            x1, y1, x2, y2 = [int(round(float(v))) for v in pred['boxes'][i]]
            cv2.rectangle(out, (x1, y1), (x2, y2), color, 1)
            text = f"{self.class_name(int(pred['labels'][i]))} " \
                f"{float(pred['scores'][i]):.2f}"
            cv2.putText(out, text, (x1, max(y1 - 2, 8)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35, color, 1)
        return out

    def write(self, path: str, image: np.ndarray,
              pred: Dict[str, np.ndarray], out_dir: str,
              score_thr: float) -> None:
        """``preds/<stem>.json`` (and ``.png``), ``vis/<stem>.jpg``."""
        cv2 = _cv2()
        stem = osp.splitext(osp.basename(path))[0]
        if self.task == 'det':
            record = self.det_record(pred, score_thr)
        else:
            record = self.seg_record(pred['label_map'])
            png = osp.join(out_dir, 'preds', stem + '.png')
            dtype = np.uint8 if len(self.classes) <= 256 else np.uint16
            cv2.imwrite(png, pred['label_map'].astype(dtype))
            record['label_png'] = osp.relpath(png, out_dir)
            record['label_png_values'] = 'index into classes'
        header = dict(image=path, height=int(image.shape[0]),
                      width=int(image.shape[1]))
        with open(osp.join(out_dir, 'preds', stem + '.json'), 'w') as f:
            json.dump(dict(header, **record), f, indent=1)
        cv2.imwrite(osp.join(out_dir, 'vis', stem + '.jpg'),
                    self.draw(image, pred, score_thr))


def make_out_dir(out_dir: str) -> None:
    """``out_dir/preds`` and ``out_dir/vis``, or a :class:`BundleError`."""
    for sub in ('preds', 'vis'):
        try:
            os.makedirs(osp.join(out_dir, sub), exist_ok=True)
        except OSError as err:
            raise BundleError(f'cannot create --out-dir {out_dir!r}: '
                              f'{err.strerror or err}') from None


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Predict with this deploy bundle (onnxruntime, numpy, '
        'OpenCV).',
        epilog='Writes DIR/preds/<image>.json (and, segmentation, '
        'DIR/preds/<image>.png) and DIR/vis/<image>.jpg.')
    parser.add_argument('inputs', nargs='+', metavar='IMAGE_OR_FOLDER',
                        help='image files or folders of images')
    parser.add_argument('--out-dir', required=True,
                        help='where preds/ and vis/ are written')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection: instances drawn and written from '
                        'this score on (default 0.3)')
    parser.add_argument('--bundle', default=HERE,
                        help='the bundle folder (default: this script\'s)')
    parser.add_argument('--threads', type=int, default=None,
                        help='onnxruntime intra-op threads')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        images = collect_images(args.inputs)
        make_out_dir(args.out_dir)
        predictor = Predictor(args.bundle, args.threads)
    except BundleError as err:
        sys.exit(f'error: {err}')
    failed, done, start = [], 0, time.perf_counter()
    for path in images:
        image = read_image(path)
        if image is None:
            failed.append(f'{path!r} could not be decoded (a damaged or '
                          'truncated image?); skipped')
            continue
        try:
            pred = predictor(image)
        except BundleError as err:
            failed.append(f'{path!r}: {err}; skipped')
            continue
        predictor.write(path, image, pred, args.out_dir, args.score_thr)
        done += 1
    for message in failed:
        print(f'error: {message}', file=sys.stderr)
    print(f'{done} image(s) in {time.perf_counter() - start:.1f} s -> '
          f'{args.out_dir}/preds, {args.out_dir}/vis')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
