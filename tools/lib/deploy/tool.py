"""The steps of ``tools/deploy.py``: a config and checkpoint to a model,
images to batches, the bundle (:mod:`.bundle`), and its agreement with the
PyTorch model's own ``test_step`` (:mod:`.compare`) in ``report.json``.
"""
import copy
import datetime
import importlib
import json
import os
import os.path as osp
import platform
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config

from ..cfg_options import merge_cfg_options
from ..cfg_walk import config_scope
from ..errors import ConfigPrepareError
from ..weights import CheckpointFileError, build_trained_model
from .bundle import (bundle_image, check_out_dir, load_predictor,
                     num_classes, write_bundle)
from .compare import (IOU, MIN_AGREEMENT, SCORE_TOL, agreement,
                      disagreements, reference_predictions)
from .export import DEFAULT_OPSET, DeployError
from .precision import export_fp16, quantize_int8

#: Side of the synthetic image used when no ``--image`` is given (H, W:
#: not square, so a test pipeline keeping the aspect ratio pads).
SYNTHETIC_SIZE = (240, 320)
#: The synthetic images compared without ``--image``: the export example,
#: then another non-square size and a square one.
SYNTHETIC_SIZES = (SYNTHETIC_SIZE, (330, 250), (280, 280))


def load_config(path: str,
                cfg_options: Optional[Dict[str, Any]] = None) -> Config:
    """The config file with ``--cfg-options`` merged (keys checked).

    Raises:
        DeployError: The file is missing, an option names an unknown key,
            or the scope is neither mmdet nor mmseg.
    """
    from ..cli import missing_config_message
    if not osp.isfile(path):
        raise DeployError(missing_config_message(path))
    cfg = Config.fromfile(path)
    try:
        merge_cfg_options(cfg, cfg_options)
        config_scope(cfg)
    except ConfigPrepareError as err:
        raise DeployError(str(err)) from err
    return cfg


def _check_checkpoint_file(path: str) -> None:
    """Refuse a file that is not what ``torch.save`` writes (a zip archive,
    or a legacy pickle) before torch tries to unpickle it."""
    import zipfile
    if '://' in path or not osp.isfile(path):
        return  # a URL, or missing: weights.py says so
    with open(path, 'rb') as f:
        first = f.read(1)
    if not zipfile.is_zipfile(path) and first != b'\x80':
        raise DeployError(
            f'checkpoint {path!r} is not a checkpoint: neither the zip '
            'archive torch.save writes nor a pickle (a text or HTML file, '
            'or a download that failed?)')


def trained_model(cfg: Config, checkpoint: Optional[str]
                  ) -> Tuple[nn.Module, Dict[str, Any]]:
    """The config's model on CPU in eval mode, SyncBN as BN, with the
    checkpoint's weights (``None``: the random initialisation), and the
    checkpoint's dict (empty without one).

    Raises:
        DeployError: The checkpoint is missing, not a checkpoint,
            unreadable (loading is ``weights_only=True``, and stays so) or
            does not fit the model (names the first differing key or
            shape).
    """
    if checkpoint is not None:
        _check_checkpoint_file(checkpoint)
    try:
        model, ckpt = build_trained_model(cfg, checkpoint)
    except CheckpointFileError as err:
        message = str(err)
        if 'Weights only load failed' in message:
            message = (f'checkpoint {checkpoint!r} holds objects other than '
                       'tensors and plain types, which safe loading refuses; '
                       'see docs/faq.md (Checkpoint refused: Weights only '
                       'load failed)')
        raise DeployError(message) from None
    return model, ckpt or {}


def build_model(cfg: Config, checkpoint: Optional[str]) -> nn.Module:
    """:func:`trained_model` without the checkpoint's dict."""
    return trained_model(cfg, checkpoint)[0]


def synthetic_image(size: Tuple[int, int] = SYNTHETIC_SIZE,
                    seed: int = 0) -> np.ndarray:
    """A deterministic BGR uint8 image with smooth colours and a few solid
    rectangles (something for random-weight models to respond to)."""
    import cv2
    rng = np.random.default_rng(seed)
    h, w = size
    img = cv2.resize(
        rng.integers(0, 256, (max(h // 16, 2), max(w // 16, 2), 3),
                     dtype=np.uint8), (w, h),
        interpolation=cv2.INTER_LINEAR)
    for _ in range(4):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        dy, dx = rng.integers(8, max(h // 3, 9)), rng.integers(
            8, max(w // 3, 9))
        img[y:y + dy, x:x + dx] = rng.integers(0, 256, 3)
    return img


def test_batch(cfg: Config, image: Any) -> dict:
    """One image through the config's test pipeline (annotation loading
    dropped) into a ``test_step`` batch.

    Args:
        cfg (Config): The config (``test_dataloader.dataset.pipeline``).
        image (str | ndarray): A file, or a BGR array.
    """
    from mmengine.dataset import Compose, pseudo_collate
    pipeline = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
    pipeline = [t for t in pipeline if 'LoadAnnotations' not in t['type']]
    if isinstance(image, np.ndarray):
        # the scope's LoadImageFromNDArray (mmdet and mmseg both have one)
        pipeline[0] = dict(type='LoadImageFromNDArray')
        results = dict(img=image, img_path=None)
    else:
        if not osp.isfile(image):
            raise DeployError(f'image {image!r} does not exist')
        results = dict(img_path=image)
    if config_scope(cfg) == 'mmseg':
        results.setdefault('reduce_zero_label', False)
        results['seg_fields'] = []
    from mmengine.registry import init_default_scope
    init_default_scope(config_scope(cfg))
    return pseudo_collate([Compose(pipeline)(results)])


def _median_ms(step: Callable[[], Any], repeat: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1e3, 2)


def versions() -> Dict[str, str]:
    """The versions of everything the export and the comparison ran on."""
    out = dict(python=platform.python_version(), torch=torch.__version__,
               numpy=np.__version__, machine=platform.machine(),
               processor=platform.processor() or platform.machine(),
               cpus=str(os.cpu_count()), torch_threads=str(
                   torch.get_num_threads()))
    for name in ('onnx', 'onnxruntime', 'mmcv', 'mmengine', 'mmdet',
                 'mmseg'):
        try:
            out[name] = importlib.import_module(name).__version__
        except ImportError:
            pass
    return out


def dataset_meta(cfg: Config, model: nn.Module,
                 checkpoint: Dict[str, Any]) -> Dict[str, Any]:
    """Class names and palette as ``tools/infer.py`` reads them (the
    checkpoint's, else the config's dataset's, else numbered)."""
    from ..infer import dataset_meta as infer_meta
    return infer_meta(cfg, checkpoint, num_classes(model))


def _image_name(image: Any) -> str:
    return image if isinstance(image, str) else \
        f'array{tuple(image.shape)}'


def _compare(model: nn.Module, predictor: Any, images: Sequence[Any],
             batches: Sequence[dict], repeat: int,
             references: List[Any]) -> Tuple[List[dict], List[float],
                                              List[float]]:
    """Each image through ``test_step`` (kept in ``references``, computed
    once) and the bundle; agreement and, with ``repeat``, latencies."""
    per_image, pytorch_ms, bundle_ms = [], [], []
    for i, (img, data) in enumerate(zip(images, batches)):
        if len(references) <= i:
            with torch.no_grad():
                references.append(model.test_step(copy.deepcopy(data))[0])
            if repeat > 0:
                pytorch_ms.append(_median_ms(
                    lambda: model.test_step(copy.deepcopy(data)), repeat))
        ref = references[i]
        res = dict(image=_image_name(img),
                   input_shape=list(ref.metainfo.get('batch_input_shape',
                                                     ref.metainfo.get(
                                                         'img_shape', ()))))
        array = bundle_image(img)
        try:
            got = predictor(array)
        except Exception as err:  # noqa: BLE001 - the bundle's refusal
            res.update(agreement=0.0, error=str(err))
            per_image.append(res)
            continue
        res.update(agreement(reference_predictions(ref), got))
        per_image.append(res)
        if repeat > 0:
            bundle_ms.append(_median_ms(lambda: predictor(array), repeat))
    return per_image, pytorch_ms, bundle_ms


def deploy(config: str,
           checkpoint: Optional[str],
           out_dir: str,
           images: Sequence[Any] = (),
           shape: Optional[Tuple[int, int]] = None,
           opset: int = DEFAULT_OPSET,
           cfg_options: Optional[Dict[str, Any]] = None,
           repeat: int = 3,
           fp16: bool = False,
           int8_calib: Optional[str] = None) -> Dict[str, Any]:
    """Write the bundle, run every image through the PyTorch model's
    ``test_step`` and the bundle's ``predict.py``, compare, and write
    ``out_dir/report.json``.

    Args:
        config (str): Config file.
        checkpoint (str, optional): Checkpoint file (None: random weights).
        out_dir (str): The bundle's folder (created).
        images (list): Files or BGR arrays; the first is the export's
            example. Defaults to three synthetic images of other sizes.
        shape (tuple[int, int], optional): Static graph for inputs of this
            H, W (after the test pipeline and padding).
        opset (int): ONNX opset. Defaults to 17.
        cfg_options (dict, optional): ``--cfg-options``.
        repeat (int): Timed runs per way (median). Defaults to 3.
        fp16 (bool): Also export the fp16 graph
            (:func:`.precision.export_fp16`), which the bundle then uses;
            its agreement and latency are reported under ``fp16`` (the
            exit status stays the fp32 graph's). Defaults to False.
        int8_calib (str, optional): A folder of calibration images: the
            bundle's graph is then quantized to int8
            (:func:`.precision.quantize_int8`), reported under ``int8``
            as ``fp16`` is. Defaults to None (not with ``fp16``).

    Returns:
        dict: The report (also written to ``report.json``), with
        ``disagreements`` (lines; empty when every image agrees).
    """
    if fp16 and int8_calib is not None:
        raise DeployError('--fp16 and --int8 each make the graph the bundle '
                          'uses: give one (or make two bundles)')
    cfg = load_config(config, cfg_options)
    check_out_dir(out_dir)
    model, ckpt = trained_model(cfg, checkpoint)
    images = list(images) or [synthetic_image(s, i)
                              for i, s in enumerate(SYNTHETIC_SIZES)]
    skipped = []
    for img in [i for i in images if isinstance(i, str)]:
        try:
            bundle_image(img)
        except DeployError as err:
            skipped.append(f'{err}; skipped')
            images.remove(img)
    if not images:
        raise DeployError('no image to check the bundle on: ' +
                          '; '.join(skipped))
    batches = [test_batch(cfg, img) for img in images]
    source = dict(config=osp.abspath(config), checkpoint=checkpoint,
                  date=datetime.date.today().isoformat(),
                  versions=versions())
    info = write_bundle(out_dir, cfg, model, batches[0],
                        dataset_meta(cfg, model, ckpt), shape, opset, source)
    predictor = load_predictor(out_dir, torch.get_num_threads())
    references: List[Any] = []
    per_image, pytorch_ms, bundle_ms = _compare(model, predictor, images,
                                                batches, repeat, references)
    report = dict(
        task='segmentation' if predictor.task == 'seg' else 'detection',
        config=config,
        checkpoint=checkpoint,
        agreement=min(r['agreement'] for r in per_image),
        thresholds=dict(min_agreement=MIN_AGREEMENT, iou=IOU,
                        score_tol=SCORE_TOL),
        latency_ms=dict(pytorch=pytorch_ms, bundle=bundle_ms,
                        repeat=repeat, threads=torch.get_num_threads()),
        export_s=round(info['seconds'], 2),
        bundle=dict(files={k: round(v / 2**20, 3)
                           for k, v in info['files'].items()},
                    mb=round(sum(info['files'].values()) / 2**20, 2)),
        op_types=info['op_types'],
        rewritten_for_export=info['replaced'],
        opset=opset,
        dynamic=shape is None,
        shape=list(shape) if shape else None,
        images=per_image,
        skipped=skipped,
        versions=source['versions'],
        date=source['date'])
    lower = None
    if fp16:
        lower = 'fp16', export_fp16(out_dir, model, batches[0], shape, opset)
    elif int8_calib is not None:
        lower = 'int8', quantize_int8(out_dir, int8_calib)
    if lower is not None:
        name, figures = lower
        predictor = load_predictor(out_dir, torch.get_num_threads())
        low_images, _, low_ms = _compare(model, predictor, images, batches,
                                         repeat, references)
        report[name] = dict(figures, images=low_images, latency_ms=low_ms,
                            agreement=min(r['agreement']
                                          for r in low_images))
    report['disagreements'] = disagreements(per_image)
    with open(osp.join(out_dir, 'report.json'), 'w') as f:
        json.dump(report, f, indent=1)
    return report
