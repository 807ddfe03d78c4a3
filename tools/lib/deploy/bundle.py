"""The deploy bundle: ``end2end.onnx`` (:mod:`.end2end`), ``bundle.json``
(the preprocessing, classes and palette as data) and ``predict.py``
(:mod:`.predict`, copied: it imports numpy, onnxruntime and OpenCV only).

:func:`preprocess_spec` reads the config's test pipeline and data
preprocessor into what ``predict.py`` reproduces, and refuses a transform
it does not (naming it).
"""
import copy
import importlib.util
import json
import os
import os.path as osp
import shutil
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from .export import DEFAULT_OPSET, END2END, DeployError, export_end2end
from .predict import BUNDLE_JSON, INTERPOLATIONS, read_image

#: Bumped when bundle.json changes meaning.
BUNDLE_FORMAT = 1
#: Test pipeline steps that carry no image operation at inference.
_NO_OP_STEPS = ('LoadAnnotations', 'PackDetInputs', 'PackSegInputs')


def _refuse_step(step: Dict[str, Any], why: str) -> DeployError:
    return DeployError(
        f"cannot express the test pipeline's {step['type']} in the bundle: "
        f'{why}')


def preprocess_spec(cfg: Any) -> Dict[str, Any]:
    """The test pipeline and data preprocessor as ``predict.py`` applies
    them: ``resize`` (scale, keep_ratio, interpolation), ``mean``, ``std``,
    ``bgr_to_rgb``, ``pad_size_divisor`` / ``pad_size``, ``pad_value``.

    Raises:
        DeployError: A step the script does not reproduce (named).
    """
    pipeline = cfg.test_dataloader.dataset.pipeline
    spec: Dict[str, Any] = dict(resize=None)
    for i, step in enumerate(pipeline):
        kind = step['type'].split('.')[-1]
        if i == 0:
            if kind not in ('LoadImageFromFile', 'LoadImageFromNDArray'):
                raise _refuse_step(step, 'the first step must load the '
                                   'image (LoadImageFromFile)')
            if step.get('color_type', 'color') != 'color' or \
                    step.get('imdecode_backend', 'cv2') != 'cv2':
                raise _refuse_step(step, "color_type='color' and the cv2 "
                                   'decoder are reproduced')
        elif kind == 'Resize':
            if step.get('backend', 'cv2') != 'cv2' or step.get(
                    'interpolation', 'bilinear') not in INTERPOLATIONS or \
                    step.get('scale') is None:
                raise _refuse_step(step, 'a cv2 resize to a scale is '
                                   'reproduced (not scale_factor, not '
                                   'pillow)')
            scale = step['scale']
            scale = [scale, scale] if isinstance(scale, int) else list(scale)
            spec['resize'] = dict(scale=scale,
                                  keep_ratio=bool(step.get('keep_ratio',
                                                           False)),
                                  interpolation=step.get('interpolation',
                                                         'bilinear'))
        elif kind not in _NO_OP_STEPS:
            raise _refuse_step(step, 'predict.py reproduces LoadImageFromFile'
                               ' and Resize (and ignores LoadAnnotations / '
                               'Pack*Inputs)')
    pre = cfg.model.data_preprocessor
    spec.update(mean=list(pre.get('mean') or [0, 0, 0]),
                std=list(pre.get('std') or [1, 1, 1]),
                bgr_to_rgb=bool(pre.get('bgr_to_rgb', False)
                                or pre.get('rgb_to_bgr', False)))
    if pre['type'].endswith('SegDataPreProcessor'):
        test_cfg = pre.get('test_cfg') or {}
        spec.update(pad_size=list(test_cfg['size']) if test_cfg.get('size')
                    else None,
                    pad_size_divisor=test_cfg.get('size_divisor'),
                    pad_value=pre.get('pad_val', 0))
    else:  # batch_augments are training-only
        spec.update(pad_size=None,
                    pad_size_divisor=pre.get('pad_size_divisor', 1),
                    pad_value=pre.get('pad_value', 0))
    return spec


def num_classes(model: nn.Module) -> int:
    """The classes the model predicts."""
    if hasattr(model, 'decode_head'):
        return model.decode_head.num_classes
    if hasattr(model, 'roi_head'):
        head = model.roi_head.bbox_head
        head = head[-1] if isinstance(head, nn.ModuleList) else head
        return head.num_classes
    return model.bbox_head.num_classes


def example_inputs(model: nn.Module, data: dict,
                   shape: Optional[Any] = None) -> Dict[str, torch.Tensor]:
    """The graph's inputs for a ``test_step`` batch, by the PyTorch
    model's own preprocessing (``shape``: a zero input of that H, W)."""
    with torch.no_grad():
        packed = model.data_preprocessor(copy.deepcopy(data), False)
    inputs = packed['inputs']
    meta = packed['data_samples'][0].metainfo
    if shape is not None:
        inputs = torch.zeros(1, 3, *shape)
    out = dict(inputs=inputs)
    if hasattr(model, 'decode_head'):
        out.update(img_shape=torch.tensor(meta['img_shape'][:2]),
                   ori_shape=torch.tensor(meta['ori_shape'][:2]))
    else:
        out.update(img_shape=torch.tensor(meta['img_shape'][:2],
                                          dtype=torch.float32),
                   scale_factor=torch.tensor(meta['scale_factor'],
                                             dtype=torch.float32))
    return out


def write_bundle(out_dir: str, cfg: Any, model: nn.Module, data: dict,
                 meta: Dict[str, Any], shape: Optional[Any] = None,
                 opset: int = DEFAULT_OPSET,
                 source: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Export ``model`` and write the bundle into ``out_dir``.

    Args:
        out_dir (str): Created if missing.
        cfg (Config): The model's config (test pipeline, preprocessor).
        model (nn.Module): The detector / segmentor with its weights.
        data (dict): A ``test_step`` batch, the export's example.
        meta (dict): ``classes`` and ``palette``.
        shape (tuple[int, int], optional): A static graph for inputs of
            this H x W (after resizing and padding). Defaults to None:
            dynamic H and W.
        opset (int): ONNX opset. Defaults to :data:`DEFAULT_OPSET`.
        source (dict, optional): Provenance kept in ``bundle.json``.

    Returns:
        dict: :func:`.export.export_end2end`'s figures and ``files``
        (name -> bytes).
    """
    spec = preprocess_spec(cfg)
    spec['static_input'] = list(shape) if shape else None
    info = export_end2end(model, example_inputs(model, data, shape),
                          osp.join(out_dir, END2END), dynamic=shape is None,
                          opset=opset)
    task = 'seg' if hasattr(model, 'decode_head') else 'det'
    rcnn = (getattr(model, 'test_cfg', None) or {}).get('rcnn') or {}
    bundle = dict(
        format=BUNDLE_FORMAT, task=task, graph=END2END, precision='fp32',
        outputs=info['outputs'], preprocess=spec,
        classes=list(meta['classes']),
        palette=[list(p) for p in meta['palette']],
        mask_thr_binary=float(rcnn.get('mask_thr_binary', 0.5)),
        opset=opset, source=source or {})
    with open(osp.join(out_dir, BUNDLE_JSON), 'w') as f:
        json.dump(bundle, f, indent=1)
    shutil.copyfile(osp.join(osp.dirname(__file__), 'predict.py'),
                    osp.join(out_dir, 'predict.py'))
    with open(osp.join(out_dir, 'README.md'), 'w') as f:
        f.write(bundle_readme(bundle))
    info['files'] = {name: osp.getsize(osp.join(out_dir, name))
                     for name in (END2END, BUNDLE_JSON, 'predict.py',
                                  'README.md')}
    return info


#: What the bundle's README says of each precision of its graph.
PRECISION_NOTES = {
    'fp32': 'fp32',
    'fp16': 'networks in fp16, LayerNorm / GRN statistics and the '
    'post-processing in fp32: for GPU runtimes; on a CPU, end2end.onnx '
    '(fp32) is faster',
    'int8': 'int8 QDQ convolutions and matrix products, the rest fp32; '
    'end2end.onnx beside it is the fp32 graph',
}


def bundle_readme(bundle: Dict[str, Any]) -> str:
    """The bundle's README: how to run it, what goes in and comes out."""
    det = bundle['task'] == 'det'
    outputs = ('`boxes` (D, 4) x1 y1 x2 y2 in original-image pixels, '
               '`scores` (D,), `labels` (D,) int64' +
               (', `masks` (D, 28, 28) mask probabilities over each box '
                '(pasted by predict.py)' if 'masks' in bundle['outputs']
                else '') if det else
               '`labels` (h, w) int64: the label map at the original size')
    inputs = ('`inputs` (1, 3, H, W) float32, `img_shape` (2,) float32 [h, '
              'w] of the resized image, `scale_factor` (2,) float32 [w, h] '
              'resized / original' if det else
              '`inputs` (1, 3, H, W) float32, `img_shape` and `ori_shape` '
              '(2,) int64 [h, w] of the resized and the original image')
    static = bundle['preprocess'].get('static_input')
    size = f'; exactly {static[0]} x {static[1]}' if static else ''
    return f"""# ConvNeXt {'detector' if det else 'segmentor'} bundle

Runs with onnxruntime, numpy and OpenCV only:

    pip install onnxruntime numpy opencv-python-headless
    python predict.py IMAGE_OR_FOLDER... --out-dir OUT [--score-thr 0.3]

Writes `OUT/preds/<image>.json`{'' if det else ', `OUT/preds/<image>.png`'} and
`OUT/vis/<image>.jpg`. From Python: `from predict import Predictor;
Predictor('.')(bgr_image)`.

- `{bundle['graph']}` ({PRECISION_NOTES[bundle.get('precision', 'fp32')]}):
  one image per call; inputs {inputs} (resized,
  normalised and padded as `bundle.json`'s `preprocess` says{size});
  outputs {outputs}.
- `bundle.json`: preprocessing, {len(bundle['classes'])} classes, palette,
  provenance.
"""


def name_graph(out_dir: str, graph: str, precision: str) -> None:
    """Make ``graph`` (a file in ``out_dir``, of ``precision``) the graph
    ``bundle.json`` and the bundle's README name; the others stay beside
    it."""
    with open(osp.join(out_dir, BUNDLE_JSON)) as f:
        spec = json.load(f)
    spec.update(graph=graph, precision=precision)
    with open(osp.join(out_dir, BUNDLE_JSON), 'w') as f:
        json.dump(spec, f, indent=1)
    with open(osp.join(out_dir, 'README.md'), 'w') as f:
        f.write(bundle_readme(spec))


def bundle_module(out_dir: str) -> Any:
    """The bundle's own ``predict.py`` as a module (the copy in
    ``out_dir``, not this package's).

    Raises:
        DeployError: ``out_dir`` holds no ``predict.py``.
    """
    path = osp.join(out_dir, 'predict.py')
    if not osp.isfile(path):
        raise DeployError(f'{out_dir!r} is not a deploy bundle (no '
                          'predict.py in it): give the folder tools/deploy.py'
                          ' --out-dir wrote')
    spec = importlib.util.spec_from_file_location(
        f'bundle_predict_{abs(hash(out_dir))}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bundle_image(image: Any) -> Any:
    """What the bundle's predictor takes: a BGR array (a file read as
    ``predict.py`` reads it, :func:`.predict.read_image`).

    Raises:
        DeployError: A missing file, or one that cannot be decoded.
    """
    if not isinstance(image, str):
        return image
    if not osp.isfile(image):
        raise DeployError(f'image {image!r} does not exist')
    array = read_image(image)
    if array is None:
        raise DeployError(f'image {image!r} could not be decoded (a '
                          'damaged or truncated image?)')
    return array


def load_predictor(out_dir: str, threads: Optional[int] = None) -> Any:
    """The bundle's ``Predictor`` (:func:`bundle_module`) on CPU."""
    return bundle_module(out_dir).Predictor(
        out_dir, threads, providers=['CPUExecutionProvider'])


def check_out_dir(out_dir: str) -> None:
    """Create ``out_dir``, or one :class:`DeployError` line saying why it
    cannot be."""
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as err:
        raise DeployError(f'cannot create --out-dir {out_dir!r}: '
                          f'{err.strerror or err}') from None
    if not os.access(out_dir, os.W_OK):
        raise DeployError(f'cannot write into --out-dir {out_dir!r}')
