"""The ``model`` mode of ``tools/analysis/benchmark.py``: a det/seg config's
whole model (random weights, synthetic images and annotations), inference
and the config's own train step with its optimizer wrapper; with
``--peers mmpretrain`` also the config with mmpretrain's ConvNeXt as its
backbone, the same weights in both.

The config may be this package's or one of mmdet's / mmseg's own ConvNeXt
configs (``type='mmpretrain.ConvNeXt'``; a file, or ``mmdet::convnext/...``
as they ship it): then the "convnext" row is that config with only the
backbone's type changed to this package's ``ConvNeXt`` (what
docs/coming_from_mmpretrain.md tells a user to do) and the "mmpretrain" row
is the config itself, so the table shows what the switch buys.

Each timed model is a row of the table: :func:`time_models` times every
row's step per mode in the same rounds (:func:`model_step` says what a step
is) and :data:`COLUMNS` says which figures the table shows; a new row
(another backbone, another way to run the model) is one more entry of the
``models`` it is given.
"""
import argparse
import copy
import os.path as osp
import sys
from typing import Callable, Dict, Sequence, Tuple

import torch
from mmengine.config import Config, DictAction

from convnext_backbone.presets import preset_name, resolve_arch
from tools.analysis.bench_fast import SETTINGS, fast_table, run_settings
from tools.analysis.bench_peers import (PEER_TOLERANCE, peer_feature_errors,
                                        peer_names, peer_unavailable,
                                        peer_weights)
from tools.lib.cfg_walk import iter_dicts
from tools.lib.measure import (MiB, describe_machine, interleaved_times,
                               machine_info, markdown_table, median,
                               peak_step_memory)

MODES = ('infer', 'train')  # timed in this order
# The table's figure columns: (figure, header, format); a row without a
# figure (a mode not timed) shows '-'.
COLUMNS = (('infer_img_per_s', 'infer img/s', '.2f'),
           ('infer_latency_ms', 'infer latency ms', '.0f'),
           ('train_step_s', 'train step s', '.2f'),
           ('train_peak_mb', 'train peak MB', '.0f'))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The mode's options, added to its sub-command's ``parser``."""
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default: 800 1333 for detection, '
                        'the crop size for segmentation)')
    parser.add_argument('--batch', type=int,
                        help='images per step (default: 1 for inference, '
                        "the config's train_dataloader.batch_size, i.e. per "
                        'GPU, for the train step)')
    parser.add_argument('--modes', nargs='+', choices=MODES, default=MODES)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    parser.add_argument('--fast', nargs='+', choices=SETTINGS,
                        help='instead of infer/train: one row per inference '
                        'setting (none = eager; exact, bf16, fp16 = '
                        'convnext_backbone.optimize_for_inference), each '
                        'timed on the tensor path and on test_step in the '
                        'same rounds, with the time split of a prediction')
    parser.add_argument('--onnxruntime', action='store_true',
                        help='with --fast: also the model exported to ONNX '
                        'and run by onnxruntime')
    parser.add_argument('--peers', nargs='+', choices=peer_names(),
                        default=(),
                        help='mmpretrain: also time the config with '
                        "mmpretrain's ConvNeXt as its backbone, the same "
                        'weights in both')


def _first_value(node, key: str):
    return next((d[key] for d in iter_dicts(node) if key in d), None)


def synthetic_batch(scope: str, num_classes: int, batch: int, shape,
                    seed: int = 0) -> Dict[str, list]:
    """A packed data batch as a dataloader gives it: uint8 images and
    data samples with random annotations (boxes and masks for detection,
    a label map for segmentation)."""
    h, w = shape
    gen = torch.Generator().manual_seed(seed)
    if scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        torch.manual_seed(seed)
        data = demo_mm_inputs(batch_size=batch, image_shapes=(3, h, w),
                              num_items=[8] * batch, num_classes=num_classes,
                              with_mask=True)
        for sample in data['data_samples']:
            # demo_mm_inputs claims a rescale of (1.1, 1.2) that the image
            # never had: an image at its original size has factor 1 (the
            # onnxruntime row, a bundle, compares its predictions with it)
            sample.set_metainfo(dict(scale_factor=(1.0, 1.0)))
        return data
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=gen,
                                    dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(
            img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
            scale_factor=(1.0, 1.0), flip=False, img_path=None))
        sample.gt_sem_seg = PixelData(data=torch.randint(
            0, num_classes, (1, h, w), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _default_model_shape(cfg) -> tuple:
    if cfg.default_scope == 'mmdet':
        return (800, 1333)
    crop = _first_value(cfg.to_dict().get('train_pipeline', []),
                        'crop_size') or _first_value(
                            cfg.model.to_dict(), 'size')
    if crop is None:
        sys.exit('error: no crop_size in the config; pass --shape H W')
    return tuple(crop)


def load_model_config(path: str) -> Config:
    """A config file, or a config as mmdet / mmseg ship it
    (``'mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py'``),
    read without its ``custom_imports`` (mmdet's / mmseg's ConvNeXt configs
    import ``mmpretrain.models``, which does not import on every stack; the
    mmpretrain row checks for it)."""
    import importlib
    if '::' in path:
        package, _, rel = path.partition('::')
        try:
            module = importlib.import_module(package)
        except ImportError:
            sys.exit(f'error: {path!r}: {package} is not installed')
        path = osp.join(osp.dirname(module.__file__), '.mim', 'configs', rel)
    if not osp.isfile(path):
        sys.exit(f'error: config {path!r} does not exist; pass a path like '
                 'configs/mask_rcnn_convnext_t.py or '
                 "'mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-"
                 "3x_coco.py'")
    return Config.fromfile(path, import_custom_modules=False)


def with_this_backbone(cfg: Config) -> Tuple[Config, object]:
    """For a config of mmdet's / mmseg's zoo (backbone
    ``mmpretrain.ConvNeXt``): the same config with the backbone's type
    changed to this package's ``ConvNeXt``, and the config itself (the
    peer). Any other config: itself, and None.
    """
    if cfg.model.backbone.get('type') != 'mmpretrain.ConvNeXt':
        return cfg, None
    ours = copy.deepcopy(cfg)
    ours.model.backbone.type = 'ConvNeXt'
    ours.custom_imports = dict(imports=['convnext_backbone'],
                               allow_failed_imports=False)
    return ours, cfg


def mmpretrain_peer_cfg(cfg):
    """A copy of the config with mmpretrain's ConvNeXt as its backbone
    (``gap_before_final_norm=False``, as mmdet's and mmseg's own ConvNeXt
    configs use it; for a ``ConvNeXtV2`` backbone ``use_grn=True`` and no
    layer scale) and mmdet's / mmseg's own
    ``LearningRateDecayOptimizerConstructor``, which knows mmpretrain's
    parameter names, with the same decay."""
    from convnext_backbone.layer_decay import infer_num_layers
    peer = copy.deepcopy(cfg)
    ours = cfg.model.backbone
    arch = ours.get('arch', 'tiny')
    settings = resolve_arch(arch)
    if isinstance(arch, str):
        arch = preset_name(arch)
    else:  # mmpretrain names the widths 'channels'
        arch = dict(depths=list(settings['depths']),
                    channels=list(settings['dims']))
    if ours.type == 'ConvNeXtV2':
        version = dict(use_grn=True, layer_scale_init_value=0.)
    else:
        version = dict(layer_scale_init_value=ours.get(
            'layer_scale_init_value', 1e-6))
    peer.model.backbone = dict(
        type='mmpretrain.ConvNeXt', arch=arch,
        out_indices=tuple(ours.get('out_indices', (0, 1, 2, 3))),
        drop_path_rate=ours.get('drop_path_rate', 0.),
        frozen_stages=max(ours.get('frozen_stages', -1), 0),
        with_cp=ours.get('with_cp', False), gap_before_final_norm=False,
        init_cfg=None, **version)
    optim_wrapper = peer.get('optim_wrapper', {})
    if optim_wrapper.get('constructor') == \
            'ConvNeXtLayerDecayOptimizerConstructor':
        optim_wrapper.constructor = 'LearningRateDecayOptimizerConstructor'
        paramwise = optim_wrapper.paramwise_cfg
        paramwise.setdefault('decay_type', 'layer_wise')
        paramwise.setdefault('num_layers',
                             infer_num_layers(settings['depths']))
    return peer


def _share_weights(peer: torch.nn.Module, model: torch.nn.Module) -> None:
    """Give ``model`` the peer's weights: its backbone's converted with
    ``convert_to_convnext``, the rest (same module names) as they are, so
    that both compute the same (a detector's inference time depends on
    its weights: how many boxes it keeps)."""
    state_dict = {key: value for key, value in peer.state_dict().items()
                  if not key.startswith('backbone.')}
    state_dict.update({f'backbone.{key}': value for key, value in
                       peer_weights(peer.backbone).items()})
    model.load_state_dict(state_dict)


def _model_peer(cfg, model, shape, device, build,
                peer_cfg) -> Dict[str, object]:
    """mmpretrain's backbone in the config's model, the same weights in
    both models and their backbones' features compared; like
    :func:`~tools.analysis.bench_peers.check_peer`, plus ``model`` where
    timed."""
    reason = peer_unavailable('mmpretrain')
    if reason is not None:
        return dict(status='unavailable', note=f'{reason}; not timed')
    peer = build(peer_cfg).to(device)
    peer.init_weights()
    try:
        _share_weights(peer, model)
    except RuntimeError as exc:
        return dict(status='refused', note=(
            'mmpretrain refused: its weights do not map onto this model '
            f'({str(exc).splitlines()[1].strip()}); not timed'))
    x = torch.randn(1, 3, *shape, device=device)
    errors = peer_feature_errors(model.backbone, peer.backbone, x,
                                 output_norms=True)
    worst = max(errors)
    if not worst <= PEER_TOLERANCE:
        return dict(status='refused', max_relative_errors=errors, note=(
            'mmpretrain refused: its backbone\'s features differ from this '
            f'ConvNeXt\'s from the same weights (max relative error '
            f'{worst:.1e} > {PEER_TOLERANCE:.0e}); not timed'))
    return dict(status='ok', max_relative_errors=errors, model=peer, note=(
        'mmpretrain (the config with backbone mmpretrain.ConvNeXt, '
        'gap_before_final_norm=False, and its scope\'s '
        'LearningRateDecayOptimizerConstructor): the same weights in both '
        'models, backbone features equal (max relative error '
        f'{worst:.1e}, fp32); timed'))


def model_step(model: torch.nn.Module, cfg: Config, data: dict,
               mode: str) -> Callable[[], None]:
    """One step of ``model`` on ``data``: ``'infer'`` its ``test_step``
    without gradients (eval mode), ``'train'`` its ``train_step`` with the
    optimizer wrapper of ``cfg`` (train mode)."""
    from mmengine.optim import build_optim_wrapper
    if mode == 'infer':
        model.eval()

        def infer():
            with torch.no_grad():
                model.test_step(data)

        return infer
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)

    def train():
        model.train_step(data, optim_wrapper)

    return train


def time_models(models: Dict[str, Tuple[torch.nn.Module, Config]],
                modes: Sequence[str], batches: Dict[str, int],
                batch_data: Callable[[int], dict], device: torch.device,
                iters: int, warmup: int) -> Dict[str, Dict[str, float]]:
    """Each model's figures: per mode (in :data:`MODES` order) the steps
    of all models timed in the same rounds on one synthetic batch.

    Args:
        models (dict): Row name -> (model, its config).
        modes (Sequence[str]): ``'infer'`` and/or ``'train'``.
        batches (dict): Images per step of each mode.
        batch_data (callable): Images per step -> a data batch.
        device (torch.device): Where the models are.
        iters (int): Timed rounds (the median is reported).
        warmup (int): Untimed rounds first.

    Returns:
        dict: Row name -> ``infer_latency_ms`` and ``infer_img_per_s``,
        ``train_step_s`` and ``train_peak_mb``, for the modes timed.
    """
    figures = {name: {} for name in models}
    for mode in (m for m in MODES if m in modes):
        data = batch_data(batches[mode])
        steps = {name: model_step(model, cfg, data, mode)
                 for name, (model, cfg) in models.items()}
        times = interleaved_times(steps, device, iters, warmup)
        for name in models:
            seconds = median(times[name])
            if mode == 'infer':
                figures[name]['infer_latency_ms'] = seconds * 1e3
                figures[name]['infer_img_per_s'] = batches[mode] / seconds
            else:
                figures[name]['train_step_s'] = seconds
                figures[name]['train_peak_mb'] = peak_step_memory(
                    steps[name], device) / MiB
    return figures


def run(args: argparse.Namespace,
        device: torch.device) -> Dict[str, object]:
    """Time the config's model (and its peer) on ``device``; print the
    table and return every figure."""
    from tools.lib.cfg_options import merge_cfg_options
    from tools.lib.device import adapt_to_device
    from tools.lib.errors import ConfigPrepareError
    from tools.lib.models import build_model_without_weights
    if set(args.peers) - {'mmpretrain'}:
        sys.exit('error: --peers timm: the model mode swaps the config\'s '
                 'backbone for another mmdet/mmseg backbone, and timm\'s '
                 'features_only model is not one; use --peers mmpretrain')
    cfg, zoo_cfg = with_this_backbone(load_model_config(args.config))
    merge_cfg_options(cfg, args.cfg_options)
    peer_cfg = zoo_cfg or mmpretrain_peer_cfg(cfg)
    if zoo_cfg is not None:
        merge_cfg_options(peer_cfg, args.cfg_options)
        adapt_to_device(peer_cfg, distributed=False,
                        cuda=device.type == 'cuda')
    adapt_to_device(cfg, distributed=False, cuda=device.type == 'cuda')
    try:
        model = build_model_without_weights(cfg).to(device)
    except ConfigPrepareError as exc:
        sys.exit(f'error: {exc}')
    model.init_weights()  # random weights
    scope = cfg.default_scope
    shape = tuple(args.shape) if args.shape else _default_model_shape(cfg)
    batches = dict(infer=args.batch or 1,
                   train=args.batch or cfg.train_dataloader.batch_size)
    if (scope == 'mmseg' and 'train' in args.modes and not args.fast
            and batches['train'] < 2):
        sys.exit(f"error: --batch {batches['train']}: a segmentor train "
                 'step needs 2 or '
                 "more images (UperNet's pooling module batch-normalises 1x1 "
                 'maps); pass --batch 2 or --modes infer')
    num_classes = _first_value(cfg.model.to_dict(), 'num_classes')
    if args.fast:
        data = synthetic_batch(scope, num_classes, batches['infer'], shape)
        result = dict(config=osp.basename(args.config), scope=scope,
                      shape=list(shape), batch=batches['infer'],
                      cfg_options=args.cfg_options or {},
                      machine=machine_info(device))
        result['rows'] = run_settings(model, args.fast, data, scope, device,
                                      args.iters, args.warmup,
                                      args.onnxruntime, cfg)
        print(f"{describe_machine(result['machine'])}; random weights, "
              'synthetic data')
        print(fast_table(result))
        return result
    models = dict(convnext=(model, cfg))
    peers = []
    if args.peers:
        peer = dict(peer='mmpretrain', **_model_peer(
            cfg, model, shape, device, build_model_without_weights,
            peer_cfg))
        if 'model' in peer:
            models['mmpretrain'] = (peer.pop('model'), peer_cfg)
        peers.append(peer)

    result = dict(config=osp.basename(args.config), scope=scope,
                  shape=list(shape), batch=batches,
                  machine=machine_info(device))
    figures = time_models(
        models, args.modes, batches,
        lambda batch: synthetic_batch(scope, num_classes, batch, shape),
        device, args.iters, args.warmup)
    result.update(figures['convnext'])
    for peer in peers:
        peer.update(figures.get(peer['peer'], {}))
    if peers:
        result['peers'] = peers

    print(f"{describe_machine(result['machine'])}; random weights, "
          'synthetic data')
    for peer in peers:
        print('peer ' + peer['note'])
    print(markdown_table(
        ['config', 'backbone', 'input (H, W)', 'batch (infer/train)'] +
        [header for _, header, _ in COLUMNS],
        [[result['config'], name, f'({shape[0]}, {shape[1]})',
          f"{batches['infer']}/{batches['train']}"] + [
            f'{values[key]:{fmt}}' if key in values else '-'
            for key, _, fmt in COLUMNS
        ] for name, values in figures.items()]))
    return result
