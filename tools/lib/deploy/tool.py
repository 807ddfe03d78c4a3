"""The steps of ``tools/deploy.py``: a config and checkpoint to a model,
images to batches, the export with its onnxruntime runtime, and the parity
report against the PyTorch model's own ``test_step``.

:func:`export_onnx_runtime` is the entry point for other tools (a
benchmark): model + batch in, runtime + export figures out.
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
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config

from ..cfg_options import merge_cfg_options
from ..cfg_walk import config_scope
from .compare import (MIN_AGREEMENT, disagreements, max_abs_diffs,
                             sample_agreement)
from .export import (DEFAULT_OPSET, DeployError, ExportResult,
                            export_model, graph_specs)
from .runtime import Runtime, load_runtime
from ..errors import ConfigPrepareError
from ..weights import CheckpointFileError, build_trained_model

#: Side of the synthetic image used when no ``--image`` is given (H, W:
#: not square, so a test pipeline keeping the aspect ratio pads).
SYNTHETIC_SIZE = (240, 320)


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


def build_model(cfg: Config, checkpoint: Optional[str]) -> nn.Module:
    """The config's model on CPU in eval mode, SyncBN as BN, with the
    checkpoint's weights (``None``: the random initialisation).

    Raises:
        DeployError: The checkpoint is missing, unreadable (loading is
            ``weights_only=True``) or does not fit the model (names the first
            differing key or shape).
    """
    try:
        return build_trained_model(cfg, checkpoint)[0]
    except CheckpointFileError as err:
        raise DeployError(str(err)) from err


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


def export_onnx_runtime(cfg: Config,
                        model: nn.Module,
                        data: dict,
                        out_dir: str,
                        shape: Optional[Tuple[int, int]] = None,
                        opset: int = DEFAULT_OPSET,
                        fp16: bool = False,
                        threads: Optional[int] = None
                        ) -> Tuple[Runtime, ExportResult]:
    """Export ``model`` to ONNX in ``out_dir`` and load the graphs into an
    onnxruntime :class:`~.runtime.Runtime` (the entry point for a
    benchmark: ``runtime.test_step(data)`` is the exported model's
    ``model.test_step(data)``).

    Args:
        cfg (Config): The model's config.
        model (nn.Module): The detector / segmentor with its weights.
        data (dict): A ``test_step`` batch (:func:`test_batch`); its
            preprocessed inputs are the export's example.
        out_dir (str): Where the graphs go (created).
        shape (tuple[int, int], optional): Export for this H, W only
            (static graph). Defaults to None: dynamic batch, H and W.
        opset (int): ONNX opset. Defaults to 17.
        fp16 (bool): fp16 graphs (LayerNorm / GRN statistics in fp32).
            Defaults to False.
        threads (int, optional): onnxruntime intra-op threads. Defaults to
            torch's.

    Returns:
        tuple[Runtime, ExportResult]: The runtime and what was written
        (files, export seconds).
    """
    model.eval()
    with torch.no_grad():
        example = model.data_preprocessor(copy.deepcopy(data),
                                          False)['inputs']
    if shape is not None:
        example = torch.zeros(example.shape[0], 3, *shape)
    elif (getattr(model, 'test_cfg', None) or {}).get('mode') == 'slide':
        # the graph sees crops; a crop-sized example traces the same graph
        h, w = model.test_cfg.crop_size
        example = example[..., :h, :w]
    result = export_model(model, cfg, example, out_dir,
                          dynamic=shape is None, opset=opset, fp16=fp16)
    return load_runtime(out_dir, cfg, threads), result


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


def reference_modules(model: nn.Module,
                      result: ExportResult) -> Dict[str, nn.Module]:
    """The PyTorch module behind each exported graph (for the raw output
    comparison)."""
    with torch.no_grad():
        specs = {s.name: s for s in graph_specs(
            model, torch.zeros(1, 3, 64, 64), True)}
    return {name: specs[name].module for name in result.files}


def deploy(config: str,
           checkpoint: Optional[str],
           out_dir: str,
           images: Sequence[Any] = (),
           shape: Optional[Tuple[int, int]] = None,
           opset: int = DEFAULT_OPSET,
           fp16: bool = False,
           cfg_options: Optional[Dict[str, Any]] = None,
           repeat: int = 3) -> Dict[str, Any]:
    """Export, run every image through PyTorch and onnxruntime, compare,
    and write ``out_dir/report.json``.

    Args:
        config (str): Config file.
        checkpoint (str, optional): Checkpoint file (None: random weights).
        out_dir (str): The export directory.
        images (list): Files or BGR arrays; the first is the export's
            example. Defaults to one synthetic image.
        shape (tuple[int, int], optional): Static export for this H, W.
        opset (int): ONNX opset. Defaults to 17.
        fp16 (bool): fp16 graphs. Defaults to False.
        cfg_options (dict, optional): ``--cfg-options``.
        repeat (int): Timed runs per runtime (median). Defaults to 3.

    Returns:
        dict: The report (also written to ``report.json``).
    """
    cfg = load_config(config, cfg_options)
    model = build_model(cfg, checkpoint)
    images = list(images) or [synthetic_image()]
    batches = [test_batch(cfg, img) for img in images]
    runtime, result = export_onnx_runtime(cfg, model, batches[0], out_dir,
                                          shape, opset, fp16)
    modules = reference_modules(model, result)
    per_image, latency = [], dict(pytorch=[], onnxruntime=[])
    for img, data in zip(images, batches):
        name = img if isinstance(img, str) else f'array{tuple(img.shape)}'
        with torch.no_grad():
            ref = model.test_step(copy.deepcopy(data))[0]
        runtime.start_recording()
        got = runtime.test_step(copy.deepcopy(data))[0]
        records = runtime.stop_recording()
        res = dict(image=name, input_shape=list(
            got.metainfo.get('batch_input_shape', got.metainfo.get(
                'img_shape', ()))))
        res.update(sample_agreement(ref, got))
        res['graph_calls'] = {k: len(v) for k, v in records.items()}
        res['max_abs_diff'] = ({} if fp16 else max_abs_diffs(
            records, modules))
        per_image.append(res)
        if repeat > 0:
            latency['pytorch'].append(_median_ms(
                lambda: model.test_step(copy.deepcopy(data)), repeat))
            latency['onnxruntime'].append(_median_ms(
                lambda: runtime.test_step(copy.deepcopy(data)), repeat))
    diffs: Dict[str, float] = {}
    for res in per_image:
        for k, v in res['max_abs_diff'].items():
            diffs[k] = max(diffs.get(k, 0.0), v)
    report = dict(
        task='segmentation' if result.manifest['kind'] == 'segmentor' else
        'detection',
        model=result.manifest['kind'],
        config=config,
        checkpoint=checkpoint,
        agreement=min(r['agreement'] for r in per_image),
        min_agreement=MIN_AGREEMENT,
        max_abs_diff=diffs,
        latency_ms=dict(pytorch=latency['pytorch'],
                        onnxruntime=latency['onnxruntime'],
                        repeat=repeat),
        export_s=round(result.seconds, 2),
        graphs={name: dict(file=osp.basename(path),
                           mb=round(osp.getsize(path) / 2**20, 2))
                for name, path in result.files.items()},
        rewritten_for_export=result.replaced,
        opset=opset,
        dynamic=shape is None,
        shape=list(shape) if shape else None,
        fp16=fp16,
        images=per_image,
        versions=versions(),
        date=datetime.date.today().isoformat())
    with open(osp.join(out_dir, 'report.json'), 'w') as f:
        json.dump(report, f, indent=1)
    report['disagreements'] = disagreements(per_image)
    return report
