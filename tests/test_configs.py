"""The papers' configs (ConvNeXt V1 and, under configs/convnextv2/, V2):
they load, build, match the paper and run.

- every config is in the tables below (written out from the V1 paper's
  Tables 3 and 4 and appendix A.3 and the official configs of
  facebookresearch/ConvNeXt, and from the V2 paper's Tables 6 and 7 and
  appendix A.3 / A.4, not copied from the configs) and its resolved
  hyper-parameters equal the table's;
- every config builds its full model once: parameter count close to the
  paper's, neck / head ``in_channels`` equal to the built backbone's
  ``out_channels``, and convnext_backbone's lr-decay constructor accepts it;
- every V1 config and V2's B configs run one training step and one
  validation (inference + metric) on CPU with a micro backbone, small
  images and toy data, through ``tools.lib.prepare`` and mmengine's Runner
  as tools/train.py does; so does the toy V2 config, for a whole epoch.
"""
import glob
import math
import os.path as osp
from typing import List

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, DefaultScope

from convnext_backbone import (ConvNeXt,
                               ConvNeXtLayerDecayOptimizerConstructor,
                               ConvNeXtV2)
from helpers import (CONFIG_DIR, VERSIONS, load, tiny_options,
                     toy_options)
from tools.lib.models import build_model_without_weights
from tools.lib.prepare import prepare_train_cfg
from tools.lib.runner import build_runner
from tools.lib.toy_data import toy_cfg_options

URL = 'https://dl.fbaipublicfiles.com/convnext/convnext_{}.pth'

# The official COCO configs (facebookresearch/ConvNeXt, object_detection/
# configs/convnext): detector, arch, drop path, lr, decay rate, num_layers,
# checkpoint, AMP, epochs, lr steps; last, the params (M) column of the
# paper's Table 3.
COCO = {
    'mask_rcnn_convnext_t':
    ('MaskRCNN', 'tiny', 0.4, 1e-4, 0.95, 6, 'tiny_1k_224', True, 36,
     [27, 33], 48),
    'mask_rcnn_convnext_t_1x':
    ('MaskRCNN', 'tiny', 0.4, 1e-4, 0.95, 6, 'tiny_1k_224', True, 12,
     [8, 11], 48),
    'cascade_mask_rcnn_convnext_t':
    ('CascadeRCNN', 'tiny', 0.4, 2e-4, 0.7, 6, 'tiny_1k_224', True, 36,
     [27, 33], 86),
    'cascade_mask_rcnn_convnext_s':
    ('CascadeRCNN', 'small', 0.6, 2e-4, 0.7, 12, 'small_1k_224', True, 36,
     [27, 33], 108),
    'cascade_mask_rcnn_convnext_b':
    ('CascadeRCNN', 'base', 0.7, 2e-4, 0.8, 12, 'base_1k_224', True, 36,
     [27, 33], 146),
    'cascade_mask_rcnn_convnext_b_in22k':
    ('CascadeRCNN', 'base', 0.6, 1e-4, 0.8, 12, 'base_22k_224', True, 36,
     [27, 33], 146),
    'cascade_mask_rcnn_convnext_l_in22k':
    ('CascadeRCNN', 'large', 0.7, 1e-4, 0.7, 12, 'large_22k_224', False, 36,
     [27, 33], 255),
    'cascade_mask_rcnn_convnext_xl_in22k':
    ('CascadeRCNN', 'xlarge', 0.8, 1e-4, 0.7, 12, 'xlarge_22k_224', False,
     36, [27, 33], 407),
}
# The official ADE20K configs (semantic_segmentation/configs/convnext):
# arch, crop, drop path, lr, num_layers, checkpoint; last, the params (M)
# column of the paper's Table 4.
ADE = {
    'upernet_convnext_t_512': ('tiny', 512, 0.4, 1e-4, 6, 'tiny_1k_224', 60),
    'upernet_convnext_s_512': ('small', 512, 0.3, 1e-4, 12, 'small_1k_224',
                               82),
    'upernet_convnext_b_512': ('base', 512, 0.4, 1e-4, 12, 'base_1k_224',
                               122),
    'upernet_convnext_b_640_in22k': ('base', 640, 0.4, 1e-4, 12,
                                     'base_22k_224', 122),
    'upernet_convnext_l_640_in22k': ('large', 640, 0.4, 1e-4, 12,
                                     'large_22k_224', 235),
    'upernet_convnext_xl_640_in22k': ('xlarge', 640, 0.4, 8e-5, 12,
                                      'xlarge_22k_224', 391),
}
ALL = sorted(COCO) + sorted(ADE)

V2_URL = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/{}/convnextv2_{}'
# The V2 paper's COCO runs (Woo et al., CVPR 2023, Table 6, Appendix A.3):
# arch, drop path (ours, from the sweep), decay rate (ours, from the sweep),
# num_layers.
V2_COCO = {
    'convnextv2/mask_rcnn_convnextv2_b': ('base', 0.4, 0.95, 12),
    'convnextv2/mask_rcnn_convnextv2_l': ('large', 0.5, 0.95, 12),
    'convnextv2/mask_rcnn_convnextv2_h': ('huge', 0.5, 0.95, 12),
}
# The V2 paper's ADE20K runs (Table 7, Appendix A.4): arch, drop path
# (ours), params (M) of Table 7.
V2_ADE = {
    'convnextv2/upernet_convnextv2_b_512': ('base', 0.4, 122),
    'convnextv2/upernet_convnextv2_l_512': ('large', 0.4, 235),
    'convnextv2/upernet_convnextv2_h_512': ('huge', 0.4, 707),
}
V2_ALL = sorted(V2_COCO) + sorted(V2_ADE)
# version -> its configs' folder under configs/ and their rows above
CONFIG_TABLES = {1: ('', ALL), 2: ('convnextv2', V2_ALL)}
# config -> params (M) of its paper: V1 Tables 3 and 4, V2 Table 7 (the V2
# paper gives none for COCO)
PAPER_PARAMS = {name: row[-1] for table in (COCO, ADE, V2_ADE)
                for name, row in table.items()}


def backbone_class(name: str) -> type:
    return ConvNeXtV2 if name in V2_ALL else ConvNeXt


def by_type(transforms: List[dict], type_name: str) -> dict:
    found = [t for t in transforms if t['type'] == type_name]
    assert len(found) == 1, (type_name, transforms)
    return found[0]


# ------------------------------------------------------------------- tests
@pytest.mark.parametrize('version', sorted(VERSIONS))
def test_every_config_has_a_reference_row(version):
    folder, rows = CONFIG_TABLES[version]
    names = {
        osp.join(folder, osp.splitext(osp.basename(p))[0])
        for p in glob.glob(osp.join(CONFIG_DIR, folder, '*.py'))
    }
    assert names == set(rows)


@pytest.mark.parametrize('name', ALL)
def test_common_settings(name):
    cfg = load(name)
    assert cfg.custom_imports == dict(
        imports=['convnext_backbone'], allow_failed_imports=False)
    assert cfg.default_scope == ('mmdet' if name in COCO else 'mmseg')
    backbone = cfg.model.backbone
    assert backbone.type == 'ConvNeXt'
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    assert backbone.layer_scale_init_value == 1.0
    ckpt = COCO[name][6] if name in COCO else ADE[name][5]
    assert backbone.init_cfg == dict(
        type='Pretrained', checkpoint=URL.format(ckpt))
    optim = cfg.optim_wrapper
    assert optim.optimizer.type == 'AdamW'
    assert tuple(optim.optimizer.betas) == (0.9, 0.999)
    assert optim.optimizer.weight_decay == 0.05
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs = 16
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'  # as released; see runtime


# Each variant states only what differs from the first config of its family
# (the T config; for fp32 L/XL and ADE20K 640 crops, the first of those; for
# B IN-22K, the IN-1K B config).
FAMILY = {
    'cascade_mask_rcnn_convnext_s': 'cascade_mask_rcnn_convnext_t',
    'cascade_mask_rcnn_convnext_b': 'cascade_mask_rcnn_convnext_t',
    'cascade_mask_rcnn_convnext_b_in22k': 'cascade_mask_rcnn_convnext_b',
    'cascade_mask_rcnn_convnext_l_in22k': 'cascade_mask_rcnn_convnext_t',
    'cascade_mask_rcnn_convnext_xl_in22k':
    'cascade_mask_rcnn_convnext_l_in22k',
    'mask_rcnn_convnext_t_1x': 'mask_rcnn_convnext_t',
    'upernet_convnext_s_512': 'upernet_convnext_t_512',
    'upernet_convnext_b_512': 'upernet_convnext_t_512',
    'upernet_convnext_l_640_in22k': 'upernet_convnext_b_640_in22k',
    'upernet_convnext_xl_640_in22k': 'upernet_convnext_b_640_in22k',
}


@pytest.mark.parametrize('name', sorted(FAMILY))
def test_variants_inherit_their_family_config(name):
    """A variant is a short file over its family's config, not a copy."""
    with open(osp.join(CONFIG_DIR, f'{name}.py')) as f:
        lines = f.read().splitlines()
    assert f"_base_ = './{FAMILY[name]}.py'" in lines
    code = [ln for ln in lines if ln.strip() and not ln.startswith('#')]
    assert len(code) <= 20, code


@pytest.mark.parametrize('name', sorted(COCO))
def test_coco_hyper_parameters(name):
    (detector, arch, drop_path, lr, decay_rate, num_layers, _, amp, epochs,
     steps, _) = COCO[name]
    cfg = load(name)
    model = cfg.model
    assert model.type == detector
    assert model.backbone.arch == arch
    assert model.backbone.drop_path_rate == drop_path
    optim = cfg.optim_wrapper
    assert optim.constructor == 'ConvNeXtLayerDecayOptimizerConstructor'
    assert optim.optimizer.lr == lr
    assert optim.paramwise_cfg == dict(
        decay_rate=decay_rate, decay_type='layer_wise', num_layers=num_layers)
    assert optim.type == ('AmpOptimWrapper' if amp else 'OptimWrapper')
    if amp:
        assert optim.loss_scale == 'dynamic'
    warmup, steps_cfg = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.by_epoch, warmup.begin,
            warmup.end) == ('LinearLR', 0.001, False, 0, 500)
    assert (steps_cfg.type, steps_cfg.milestones, steps_cfg.gamma,
            steps_cfg.by_epoch, steps_cfg.end) == ('MultiStepLR', steps, 0.1,
                                                   True, epochs)
    assert cfg.train_cfg.max_epochs == epochs

    # augmentation: flip, then (a) multi-scale or (b) resize-crop-resize
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert by_type(pipeline, 'RandomFlip').prob == 0.5
    branch_a, branch_b = by_type(pipeline, 'RandomChoice').transforms
    multi_scale = [(s, 1333) for s in range(480, 801, 32)]
    assert len(branch_a) == 1 and branch_a[0].type == 'RandomChoiceResize'
    assert [tuple(s) for s in branch_a[0].scales] == multi_scale
    assert [t.type for t in branch_b] == [
        'RandomChoiceResize', 'RandomCrop', 'RandomChoiceResize'
    ]
    assert [tuple(s) for s in branch_b[0].scales] == [(400, 1333),
                                                      (500, 1333),
                                                      (600, 1333)]
    assert (branch_b[1].crop_type, tuple(branch_b[1].crop_size),
            branch_b[1].allow_negative_crop) == ('absolute_range', (384, 600),
                                                 True)
    assert [tuple(s) for s in branch_b[2].scales] == multi_scale
    assert all(t.keep_ratio for t in branch_a + [branch_b[0], branch_b[2]])
    assert model.data_preprocessor.pad_size_divisor == 32
    test_pipeline = cfg.test_dataloader.dataset.pipeline
    assert tuple(by_type(test_pipeline, 'Resize').scale) == (1333, 800)
    assert cfg.test_evaluator.metric == ['bbox', 'segm']
    assert cfg.train_dataloader.dataset.data_root == 'data/coco/'

    roi_head = model.roi_head
    assert model.neck.type == 'FPN' and model.neck.out_channels == 256
    if detector == 'MaskRCNN':
        assert roi_head.bbox_head.type == 'Shared2FCBBoxHead'
        assert roi_head.bbox_head.loss_bbox.type == 'L1Loss'
        return
    # Cascade heads of the official runs
    assert roi_head.stage_loss_weights == [1, 0.5, 0.25]
    stds = [[.1, .1, .2, .2], [.05, .05, .1, .1], [.033, .033, .067, .067]]
    for head, std in zip(roi_head.bbox_head, stds, strict=True):
        assert (head.type, head.num_shared_convs,
                head.num_shared_fcs) == ('ConvFCBBoxHead', 4, 1)
        assert head.norm_cfg.type == 'SyncBN'
        assert head.reg_class_agnostic is False
        assert head.reg_decoded_bbox is True
        assert head.loss_bbox == dict(type='GIoULoss', loss_weight=10.0)
        assert head.bbox_coder.target_stds == std
    assert (model.rpn_head.loss_bbox.type,
            model.rpn_head.loss_bbox.beta) == ('SmoothL1Loss', 1.0 / 9.0)
    assert model.train_cfg.rpn_proposal.max_per_img == 2000
    assert [r.assigner.pos_iou_thr
            for r in model.train_cfg.rcnn] == [0.5, 0.6, 0.7]
    assert roi_head.mask_head.num_convs == 4


@pytest.mark.parametrize('name', sorted(ADE))
def test_ade20k_hyper_parameters(name):
    arch, crop, drop_path, lr, num_layers, _, _ = ADE[name]
    cfg = load(name)
    model = cfg.model
    assert (model.backbone.arch, model.backbone.drop_path_rate) == (arch,
                                                                    drop_path)
    optim = cfg.optim_wrapper
    assert optim.constructor == 'ConvNeXtLayerDecayOptimizerConstructor'
    assert (optim.type, optim.loss_scale) == ('AmpOptimWrapper', 'dynamic')
    assert optim.optimizer.lr == lr
    assert optim.paramwise_cfg == dict(
        decay_rate=0.9, decay_type='stage_wise', num_layers=num_layers)
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.by_epoch, warmup.begin,
            warmup.end) == ('LinearLR', 1e-6, False, 0, 1500)
    assert (poly.type, poly.power, poly.eta_min, poly.begin, poly.end,
            poly.by_epoch) == ('PolyLR', 1.0, 0.0, 1500, 160000, False)
    assert (cfg.train_cfg.type,
            cfg.train_cfg.max_iters) == ('IterBasedTrainLoop', 160000)

    scale = (4 * crop, crop)
    pipeline = cfg.train_dataloader.dataset.pipeline
    resize = by_type(pipeline, 'RandomResize')
    assert (tuple(resize.scale), tuple(resize.ratio_range)) == (scale,
                                                                (0.5, 2.0))
    random_crop = by_type(pipeline, 'RandomCrop')
    assert tuple(random_crop.crop_size) == (crop, crop)
    assert random_crop.cat_max_ratio == 0.75
    assert by_type(pipeline, 'RandomFlip').prob == 0.5
    by_type(pipeline, 'PhotoMetricDistortion')
    assert by_type(pipeline, 'LoadAnnotations').reduce_zero_label is True
    test_pipeline = cfg.test_dataloader.dataset.pipeline
    assert tuple(by_type(test_pipeline, 'Resize').scale) == scale
    assert tuple(model.data_preprocessor.size) == (crop, crop)
    stride = {512: 341, 640: 426}[crop]
    assert model.test_cfg == dict(
        mode='slide', crop_size=(crop, crop), stride=(stride, stride))
    assert cfg.test_evaluator.iou_metrics == ['mIoU']
    assert (cfg.train_dataloader.dataset.data_root ==
            'data/ade/ADEChallengeData2016')

    head, aux = model.decode_head, model.auxiliary_head
    assert (head.type, tuple(head.pool_scales), head.channels,
            head.dropout_ratio, head.num_classes,
            head.align_corners) == ('UPerHead', (1, 2, 3, 6), 512, 0.1, 150,
                                    False)
    assert head.norm_cfg.type == 'SyncBN'
    assert (aux.type, aux.in_index, aux.channels, aux.num_convs,
            aux.loss_decode.loss_weight, aux.num_classes) == ('FCNHead', 2,
                                                              256, 1, 0.4,
                                                              150)
    # multi-scale + flip test reachable with tools/test.py --tta
    assert cfg.tta_model.type == 'SegTTAModel'
    resizes, flips = cfg.tta_pipeline[1].transforms[:2]
    assert [tuple(r.scale) for r in resizes] == [
        (int(4 * crop * r), int(crop * r))
        for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    ]
    assert sorted(f.prob for f in flips) == [0., 1.]


def load_v2(name, arch, drop_path, checkpoint):
    """A V2 config, checked for what every one of them states: the V2
    backbone (no layer scale), its arch, drop path and weights."""
    cfg = load(name)
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.arch, backbone.drop_path_rate,
            backbone.layer_scale_init_value) == ('ConvNeXtV2', arch,
                                                 drop_path, None)
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=checkpoint)
    return cfg


@pytest.mark.parametrize('name', sorted(V2_COCO))
def test_v2_coco_hyper_parameters(name):
    arch, drop_path, decay_rate, num_layers = V2_COCO[name]
    # the FCMAE pre-trained encoder
    cfg = load_v2(name, arch, drop_path,
                  V2_URL.format('pt_only', f'{arch}_1k_224_fcmae.pt'))
    assert cfg.model.type == 'MaskRCNN'
    optim = cfg.optim_wrapper
    assert (optim.type, optim.optimizer.type, optim.optimizer.lr,
            optim.optimizer.weight_decay) == ('AmpOptimWrapper', 'AdamW',
                                              1e-4, 0.05)
    assert optim.paramwise_cfg == dict(
        decay_rate=decay_rate, decay_type='layer_wise', num_layers=num_layers)
    # batch 32 = 8 x 4, 3x schedule
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=32)
    assert cfg.train_cfg.max_epochs == 36
    # large-scale jittering: 1024x1024, scale range [0.1, 2.0]
    pipeline = cfg.train_dataloader.dataset.pipeline
    resize = by_type(pipeline, 'RandomResize')
    assert (tuple(resize.scale), tuple(resize.ratio_range)) == ((1024, 1024),
                                                                (0.1, 2.0))
    assert tuple(by_type(pipeline, 'RandomCrop').crop_size) == (1024, 1024)
    assert cfg.model.data_preprocessor.batch_augments == [
        dict(type='BatchFixedSizePad', size=(1024, 1024), pad_mask=True)]
    # single-scale test with soft-NMS
    assert cfg.model.test_cfg.rcnn.nms.type == 'soft_nms'
    assert tuple(by_type(cfg.test_dataloader.dataset.pipeline,
                         'Resize').scale) == (1333, 800)


@pytest.mark.parametrize('name', sorted(V2_ADE))
def test_v2_ade20k_hyper_parameters(name):
    arch, drop_path, _ = V2_ADE[name]
    # the weights after IN-1K fine-tuning
    cfg = load_v2(name, arch, drop_path,
                  V2_URL.format('im1k', f'{arch}_1k_224_ema.pt'))
    optim = cfg.optim_wrapper
    assert (optim.optimizer.lr, optim.optimizer.weight_decay) == (1e-4, 0.05)
    assert optim.paramwise_cfg == dict(
        decay_rate=0.9, decay_type='stage_wise', num_layers=12)
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs = 16
    assert cfg.train_cfg.max_iters == 160000
    assert tuple(by_type(cfg.train_dataloader.dataset.pipeline,
                         'RandomCrop').crop_size) == (512, 512)
    resizes = cfg.tta_pipeline[1].transforms[0]
    assert [tuple(r.scale) for r in resizes] == [
        (int(2048 * r), int(512 * r)) for r in (0.75, 0.875, 1.0, 1.125, 1.25)]


@pytest.mark.parametrize('name', ALL + V2_ALL)
def test_full_model(name):
    """Build once (on the meta device: shapes only): params vs the paper,
    in_channels vs the backbone, and the lr-decay constructor (num_layers
    checked against the depths)."""
    cfg = prepare_train_cfg(load(name), work_dir='unused', check_data=False)
    with torch.device('meta'):
        model = build_model_without_weights(cfg)
    assert type(model.backbone) is backbone_class(name)
    out = list(model.backbone.out_channels)
    if cfg.default_scope == 'mmdet':
        assert list(model.neck.in_channels) == out
    else:
        assert list(model.decode_head.in_channels) == out
        assert model.auxiliary_head.in_channels == out[2]
    if name in PAPER_PARAMS:
        params = sum(p.numel() for p in model.parameters()) / 1e6
        # the paper rounds to whole millions
        assert abs(params - PAPER_PARAMS[name]) < 1, params
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        constructor = OPTIM_WRAPPER_CONSTRUCTORS.get(
            cfg.optim_wrapper.constructor)
        assert constructor is ConvNeXtLayerDecayOptimizerConstructor
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    groups = optim_wrapper.optimizer.param_groups
    base_lr = cfg.optim_wrapper.optimizer.lr
    assert max(g['lr'] for g in groups) == pytest.approx(base_lr)
    decay_rate = cfg.optim_wrapper.paramwise_cfg.decay_rate
    num_layers = cfg.optim_wrapper.paramwise_cfg.num_layers
    assert min(g['lr'] for g in groups) == pytest.approx(
        base_lr * decay_rate**(num_layers + 1))


# V2: the B configs; L and H share their pipelines and heads
@pytest.mark.parametrize('name', ALL + [
    'convnextv2/mask_rcnn_convnextv2_b', 'convnextv2/upernet_convnextv2_b_512'
])
def test_one_step_on_cpu(name, toy_coco, toy_ade, tmp_path, monkeypatch):
    """One training iteration (batch 2) and one validation pass with the
    paper's pipelines (scales / 8), a micro model and toy data."""
    # The Runner formats the whole config with yapf 3 times (log, dump,
    # vis backend): ~2 s each for a Cascade config on this CPU. The raw text
    # does here; tools/train.py in test_tools.py formats it for real.
    monkeypatch.setattr(Config, 'pretty_text', property(lambda cfg: cfg.text))
    cfg = load(name)
    coco = cfg.default_scope == 'mmdet'
    options = {
        **toy_options(cfg, toy_coco if coco else toy_ade),
        **tiny_options(cfg),
        # the first images of the shared toy sets: one step of batch 2
        'train_dataloader.dataset.indices': 2,
        'train_dataloader.batch_size': 2,
        'val_dataloader.dataset.indices': 1,
    }
    if cfg.model.data_preprocessor.get('batch_augments'):
        # V2's large-scale-jittering pad, shrunk like the crop
        options['model.data_preprocessor.batch_augments'] = [
            dict(type='BatchFixedSizePad', size=(128, 128), pad_mask=True)]
    cfg = prepare_train_cfg(cfg, work_dir=str(tmp_path), cfg_options=options)
    if not torch.cuda.is_available():
        assert cfg.optim_wrapper.type == 'OptimWrapper'
    # oneDNN creates its kernels on the first call for every new input shape
    # (~7 s for one Cascade step here); torch's native CPU kernels do not.
    with torch.backends.mkldnn.flags(enabled=False):
        runner = build_runner(cfg)
        runner.train()
    assert type(runner.model.backbone) is backbone_class(name)
    scalars = runner.message_hub.log_scalars
    assert runner.iter == 1
    assert math.isfinite(scalars['train/loss'].current())
    metric = 'val/coco/bbox_mAP' if coco else 'val/mIoU'
    assert metric in scalars


def test_toy_v2_detector_trains(toy_coco, tmp_path, monkeypatch):
    """The toy V2 config trains on the shared toy set through
    tools.lib.prepare / runner, as tools/train.py runs it, and evaluates:
    finite losses, GRN (zero at init) learnt, no layer scale."""
    monkeypatch.setattr(Config, 'pretty_text', property(lambda cfg: cfg.text))
    cfg = load('toy/mask_rcnn_convnextv2_atto_toy')
    options = {
        **toy_cfg_options(toy_coco, coco=True),
        'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 1,
        'train_dataloader.batch_size': 2,
        'default_hooks.logger.interval': 1, 'log_level': 'WARNING',
        # the 64 px toy images as they are, fewer RoIs: a CPU-second step
        'train_dataloader.dataset.pipeline.2.scale': (64, 64),
        'val_dataloader.dataset.pipeline.1.scale': (64, 64),
        'model.train_cfg.rpn_proposal.max_per_img': 100,
        'model.train_cfg.rcnn.sampler.num': 32,
        'model.test_cfg.rpn.max_per_img': 50,
    }
    cfg = prepare_train_cfg(cfg, work_dir=str(tmp_path), cfg_options=options)
    runner = build_runner(cfg)
    runner.train()
    assert runner.iter == 4  # 8 images, batch 2, one epoch
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert 'coco/bbox_mAP' in runner.message_hub.log_scalars.keys() or \
        'val/coco/bbox_mAP' in runner.message_hub.log_scalars
    backbone = runner.model.backbone
    assert type(backbone) is ConvNeXtV2
    grn = backbone.stages[3][1].grn
    assert grn.gamma.abs().sum() > 0 and grn.beta.abs().sum() > 0
    assert all(block.gamma is None for stage in backbone.stages
               for block in stage)
