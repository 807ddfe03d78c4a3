"""Layer-wise lr decay: the official rule, parity with mmdet's and mmseg's
own constructors, and the optimizer wrapper it builds.

Micro backbones (dims 8..64) on CPU; the expected layer ids are written out
from the official code (facebookresearch/ConvNeXt, mmcv_custom/
layer_decay_optimizer_constructor.py of its detection and segmentation
trees).
"""
import importlib
import logging
import math
from typing import Dict, Tuple

import pytest
import torch
import torch.nn as nn
from mmengine.config import ConfigDict
from mmengine.logging import MMLogger
from mmengine.optim import AmpOptimWrapper, OptimWrapper, build_optim_wrapper
from mmengine.registry import DefaultScope

from convnext_backbone import (ARCH_SETTINGS, ConvNeXt,
                               ConvNeXtLayerDecayOptimizerConstructor,
                               ConvNeXtV2)
from convnext_backbone.layer_decay import infer_num_layers
from helpers import captured_logs, load, tiny_options
from tools.lib.models import build_model_without_weights
from tools.lib.prepare import prepare_train_cfg

DIMS = (8, 16, 32, 64)
T_DEPTHS = (1, 1, 9, 1)  # shaped like ConvNeXt-T: num_layers 6
S_DEPTHS = (1, 1, 27, 1)  # shaped like ConvNeXt-S/B/L/XL: num_layers 12

# The official rule's table, written out: (part, stage index) -> layer id, 'L' for
# num_layers. Stage 2 of layer_wise is listed block by block below.
LAYER_WISE_IDS = {
    ('downsample_layers', 0): 0,
    ('downsample_layers', 1): 2,
    ('downsample_layers', 2): 3,
    ('downsample_layers', 3): 'L',
    ('stages', 0): 1,
    ('stages', 1): 2,
    ('stages', 3): 'L',
}
STAGE2_LAYER_WISE_IDS = {
    9: (3, 3, 3, 4, 4, 4, 5, 5, 5),
    27: (3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8, 9, 9, 9, 10,
         10, 10, 11, 11, 11),
}
STAGE_WISE_IDS = {
    ('downsample_layers', 0): 0,
    ('downsample_layers', 1): 0,
    ('downsample_layers', 2): 0,
    ('downsample_layers', 3): 0,
    ('stages', 0): 1,
    ('stages', 1): 2,
    ('stages', 2): 3,
    ('stages', 3): 4,
}


def expected_layer_id(name: str, depths: Tuple[int, ...], num_layers: int,
                      decay_type: str) -> int:
    """The official id of a parameter named relative to the detector."""
    parts = name.split('.')
    if parts[0] != 'backbone' or parts[1] not in ('downsample_layers',
                                                  'stages'):
        # norm{i}, neck, heads: L + 1 (layer_wise) or N - 1 (stage_wise)
        return (num_layers + 1 if decay_type == 'layer_wise' else
                (num_layers + 2) - 1)
    key = (parts[1], int(parts[2]))
    if decay_type == 'layer_wise' and key == ('stages', 2):
        return STAGE2_LAYER_WISE_IDS[depths[2]][int(parts[3])]
    table = LAYER_WISE_IDS if decay_type == 'layer_wise' else STAGE_WISE_IDS
    return num_layers if table[key] == 'L' else table[key]


class ToyDetector(nn.Module):
    """A backbone named ``backbone`` plus non-backbone parameters."""

    def __init__(self, depths: Tuple[int, ...], frozen_stages: int = -1):
        super().__init__()
        self.backbone = ConvNeXt(
            arch=dict(depths=depths, dims=DIMS), frozen_stages=frozen_stages)
        self.neck = nn.Conv2d(DIMS[-1], 8, 1)
        self.head = nn.Linear(8, 3)


class DDPLike(nn.Module):
    """Holds the model as ``.module``, like DistributedDataParallel."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.module = model


class Outer(nn.Module):
    """Backbone two levels down, under names other than ``backbone``."""

    def __init__(self, depths: Tuple[int, ...]):
        super().__init__()
        self.detector = nn.Module()
        self.detector.encoder = ConvNeXt(arch=dict(depths=depths, dims=DIMS))
        self.detector.head = nn.Linear(8, 3)


def build(model: nn.Module,
          paramwise_cfg: dict,
          optimizer: dict = None,
          **wrapper_cfg) -> OptimWrapper:
    optimizer = optimizer or dict(type='AdamW', lr=1.0, weight_decay=0.05)
    return ConvNeXtLayerDecayOptimizerConstructor(
        dict(optimizer=optimizer, **wrapper_cfg), paramwise_cfg)(model)


def per_param(optim_wrapper: OptimWrapper,
              model: nn.Module) -> Dict[str, Tuple[float, float]]:
    """``name -> (lr, weight_decay)`` of every parameter in some group."""
    by_tensor = {}
    for group in optim_wrapper.optimizer.param_groups:
        for param in group['params']:
            assert id(param) not in by_tensor, 'a parameter in two groups'
            by_tensor[id(param)] = (group['lr'], group['weight_decay'])
    return {
        name: by_tensor[id(param)]
        for name, param in model.named_parameters() if id(param) in by_tensor
    }


@pytest.fixture
def quiet_logger():
    """Per-parameter lines of mmdet's / mmseg's constructors stay out."""
    logger = MMLogger.get_current_instance()
    levels = [h.level for h in logger.handlers]
    for handler in logger.handlers:
        handler.setLevel(logging.WARNING)
    yield
    for handler, level in zip(logger.handlers, levels):
        handler.setLevel(level)


# ------------------------------------------------------------- the rule
@pytest.mark.parametrize('decay_type', ['layer_wise', 'stage_wise'])
@pytest.mark.parametrize('depths,num_layers', [(T_DEPTHS, 6),
                                               (S_DEPTHS, 12)])
def test_lr_and_weight_decay_follow_the_official_rule(depths, num_layers,
                                              decay_type):
    model = ToyDetector(depths)
    wrapper = build(model,
                    dict(decay_rate=2., decay_type=decay_type,
                         num_layers=num_layers))
    got = per_param(wrapper, model)
    assert set(got) == {n for n, _ in model.named_parameters()}
    for name, param in model.named_parameters():
        layer_id = expected_layer_id(name, depths, num_layers, decay_type)
        # decay_rate ** (N - id - 1) with N = L + 2, base lr 1
        expected_lr = 2.0**(num_layers + 1 - layer_id)
        expected_wd = 0. if param.ndim == 1 or name.endswith('.bias') \
            else 0.05
        assert got[name] == (expected_lr, expected_wd), name
    for group in wrapper.optimizer.param_groups:
        assert group['lr_scale'] == group['lr']  # base lr is 1
        assert group['group_name'].startswith(f"layer_{group['layer_id']}_")
        assert len(group['param_names']) == len(group['params'])
    # the top group (neck, head, norm{i}) keeps the base lr
    assert got['head.weight'][0] == 1.0
    assert got['backbone.norm3.weight'][0] == 1.0


@pytest.mark.parametrize('depths,num_layers', [(T_DEPTHS, 6), (S_DEPTHS, 12),
                                               ((3, 3, 9, 3), 6),
                                               ((3, 3, 27, 3), 12),
                                               ((2, 2, 6, 2), 5),
                                               ((2, 2, 8, 2), 6)])
def test_infer_num_layers(depths, num_layers):
    assert infer_num_layers(depths) == num_layers


@pytest.mark.parametrize('decay_type', ['layer_wise', 'stage_wise'])
@pytest.mark.parametrize('depths,num_layers', [(T_DEPTHS, 6),
                                               (S_DEPTHS, 12)])
def test_num_layers_inferred_when_omitted(depths, num_layers, decay_type):
    model = ToyDetector(depths)
    given = build(model, dict(decay_rate=2., decay_type=decay_type,
                              num_layers=num_layers))
    inferred = build(model, dict(decay_rate=2., decay_type=decay_type))
    assert per_param(inferred, model) == per_param(given, model)
    assert max(g['layer_id']
               for g in inferred.optimizer.param_groups) == num_layers + 1


def test_decay_type_defaults_to_layer_wise():
    model = ToyDetector(T_DEPTHS)
    assert per_param(build(model, dict(decay_rate=2.)), model) == per_param(
        build(model, dict(decay_rate=2., decay_type='layer_wise')), model)


def test_wrapped_and_nested_backbones_get_the_same_lrs():
    model = ToyDetector(T_DEPTHS)
    cfg = dict(decay_rate=2., num_layers=6)
    plain = per_param(build(model, cfg), model)
    # via __call__ (which unwraps .module) and via add_params directly
    assert per_param(build(DDPLike(model), cfg), model) == plain
    groups = []
    ConvNeXtLayerDecayOptimizerConstructor(
        dict(optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05)),
        cfg).add_params(groups, DDPLike(model))
    assert groups[0]['param_names'][0].startswith('module.backbone.')
    lrs = {id(p): g['lr'] for g in groups for p in g['params']}
    assert {n: lrs[id(p)] for n, p in model.named_parameters()} == {
        n: lr for n, (lr, _) in plain.items()}

    outer = Outer(T_DEPTHS)
    nested = per_param(build(outer, cfg), outer)
    for name, param in outer.named_parameters():
        plain_name = name.replace('detector.encoder.', 'backbone.') \
            .replace('detector.head.', 'head.')
        assert nested[name] == plain[plain_name], name


def test_frozen_parameters_are_left_out():
    model = ToyDetector(T_DEPTHS, frozen_stages=1)
    wrapper = build(model, dict(decay_rate=2., num_layers=6))
    grouped = {id(p) for g in wrapper.optimizer.param_groups
               for p in g['params']}
    for name, param in model.named_parameters():
        frozen = name.startswith(('backbone.downsample_layers.0.',
                                  'backbone.stages.0.'))
        assert param.requires_grad is not frozen, name
        assert (id(param) in grouped) is not frozen, name
    assert {g['layer_id'] for g in wrapper.optimizer.param_groups} == \
        {2, 3, 4, 5, 6, 7}


def test_v2_layer_ids_are_the_v1_rule():
    model = ConvNeXtV2(dict(depths=(1, 1, 6, 1), dims=DIMS))
    ids = {n: model.get_layer_id(n, 5, 'layer_wise')
           for n, _ in model.named_parameters()}
    assert ids['stages.2.5.grn.gamma'] == 3 + 5 // 3
    assert ids['stages.3.0.grn.beta'] == 5
    assert ids['norm3.weight'] == 6


@pytest.mark.parametrize('arch,num_layers', [
    ('atto', 5), ('femto', 5), ('pico', 5), ('nano', 6), ('tiny', 6),
    ('base', 12), ('large', 12), ('huge', 12)])
def test_num_layers_inferred_for_every_v2_preset(arch, num_layers):
    """3 + ceil(depths[2] / 3): stage 2's last block (id 3 + b // 3) stays
    below stage 3 (id L) for 6, 8, 9 and 27 blocks; GRN's (C,) gamma and
    beta get no weight decay, as the official code decides by name."""
    with torch.device('meta'):
        model = nn.Module()
        model.backbone = ConvNeXtV2(arch)
        model.head = nn.Linear(8, 3)
    wrapper = build(model, dict(decay_rate=0.5))
    groups = {id(p): g for g in wrapper.optimizer.param_groups
              for p in g['params']}
    params = dict(model.named_parameters())
    assert max(g['layer_id'] for g in groups.values()) == num_layers + 1
    last = ARCH_SETTINGS[arch]['depths'][2] - 1
    stage2 = groups[id(params[f'backbone.stages.2.{last}.grn.gamma'])]
    assert stage2['layer_id'] == 3 + last // 3 < num_layers
    stage3 = groups[id(params['backbone.stages.3.0.grn.beta'])]
    assert (stage3['layer_id'], stage3['weight_decay']) == (num_layers, 0.)
    assert groups[id(params['backbone.stages.3.0.pwconv1.weight'])][
        'weight_decay'] == 0.05


# ----------------------------------------------------- optimizer behaviour
def test_sgd_step_moves_each_group_by_its_lr():
    model = ToyDetector(T_DEPTHS)
    wrapper = build(model, dict(decay_rate=0.5, num_layers=6),
                    optimizer=dict(type='SGD', lr=1.0, weight_decay=0.))
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
            param.grad = torch.ones_like(param)
    wrapper.step()
    params = dict(model.named_parameters())
    # stem id 0: 0.5 ** 7; stage 2 block 4 id 4: 0.5 ** 3; head id 7: 1
    for name, lr in [('backbone.downsample_layers.0.0.weight', 2.0**-7),
                     ('backbone.stages.2.4.pwconv1.weight', 2.0**-3),
                     ('head.weight', 1.0)]:
        assert torch.equal(params[name],
                           torch.full_like(params[name], -lr)), name


def test_optim_wrapper_with_clip_grad():
    model = ToyDetector(T_DEPTHS)
    wrapper = build(model, dict(decay_rate=0.7, num_layers=6),
                    type='OptimWrapper', clip_grad=dict(max_norm=1.0))
    assert type(wrapper) is OptimWrapper
    assert isinstance(wrapper.optimizer, torch.optim.AdamW)
    assert wrapper.clip_grad_kwargs == dict(max_norm=1.0)
    for param in model.parameters():
        param.grad = torch.full_like(param, 10.)
    wrapper.step()
    total = math.sqrt(sum(p.grad.norm()**2 for p in model.parameters()))
    assert total == pytest.approx(1.0, rel=1e-4)


def test_amp_optim_wrapper():
    if not torch.cuda.is_available():
        pytest.skip('AmpOptimWrapper asserts CUDA/NPU/MLU/MUSA in mmengine '
                    '0.10.7; no CUDA device here')
    model = ToyDetector(T_DEPTHS).cuda()
    wrapper = build(model, dict(decay_rate=2., num_layers=6),
                    type='AmpOptimWrapper', clip_grad=dict(max_norm=1.0))
    assert isinstance(wrapper, AmpOptimWrapper)
    assert per_param(wrapper, model) == per_param(
        build(model, dict(decay_rate=2., num_layers=6)), model)


def test_logs_one_info_table_and_details_at_debug():
    with captured_logs(MMLogger.get_current_instance()) as logs:
        build(ToyDetector(T_DEPTHS), dict(decay_rate=0.7))
    info = [r for r in logs.records if r.levelno == logging.INFO]
    debug = [r for r in logs.records if r.levelno == logging.DEBUG]
    assert len(info) == 1
    table = info[0].getMessage()
    assert 'lr_scale' in table and 'layer_7_decay' in table
    assert 'backbone.stages.2.8.gamma' not in table
    assert any('backbone.stages.2.8.gamma' in r.getMessage() for r in debug)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize('paramwise_cfg,match', [
    (dict(decay_rate=0.7, decay_type='block_wise'),
     r"block_wise.*layer_wise, stage_wise"),
    (dict(decay_rat=0.7), r"\['decay_rat'\].*decay_rate, decay_type, "
     r'num_layers'),
    (dict(decay_rate=0.7, custom_keys={}), r"custom_keys"),
    (dict(decay_type='layer_wise'), r'decay_rate'),
    (None, r'decay_rate'),
    (dict(decay_rate=0.), r'decay_rate=0.0'),
    (dict(decay_rate=0.7, num_layers=6.0), r'num_layers=6.0'),
])
def test_bad_paramwise_cfg(paramwise_cfg, match):
    with pytest.raises(ValueError, match=match):
        ConvNeXtLayerDecayOptimizerConstructor(
            dict(optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05)),
            paramwise_cfg)


def test_optimizer_without_weight_decay_is_an_error():
    with pytest.raises(ValueError, match='weight_decay'):
        ConvNeXtLayerDecayOptimizerConstructor(
            dict(optimizer=dict(type='AdamW', lr=1e-4)),
            dict(decay_rate=0.7))


@pytest.mark.parametrize('depths,num_layers,needed', [(T_DEPTHS, 12, 6),
                                                      (S_DEPTHS, 6, 12),
                                                      (T_DEPTHS, 7, 6)])
def test_num_layers_that_does_not_fit(depths, num_layers, needed):
    with pytest.raises(ValueError,
                       match=rf'num_layers={num_layers} .*'
                       rf'needs num_layers={needed}.*set num_layers'):
        build(ToyDetector(depths), dict(decay_rate=0.7,
                                        num_layers=num_layers))


def test_model_without_convnext_is_an_error():
    model = nn.Module()
    model.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    model.head = nn.Linear(8, 2)
    with pytest.raises(TypeError,
                       match=r'no convnext_backbone.ConvNeXt.*'
                       r'backbone=Sequential.*DefaultOptimWrapperConstructor'):
        build(model, dict(decay_rate=0.7))


# ------------------------------------------- parity with mmdet and mmseg
TINY = dict(depths=(1, 1, 4, 1), dims=DIMS)  # num_layers 5, ids 3, 3, 3, 4


def mask_rcnn_cfg(frozen_stages: int) -> dict:
    out_channels = list(ConvNeXt(arch=TINY).out_channels)
    roi = dict(type='SingleRoIExtractor', out_channels=16,
               featmap_strides=[4, 8, 16, 32])
    return dict(
        type='MaskRCNN',
        backbone=dict(type='ConvNeXt', arch=TINY, frozen_stages=frozen_stages),
        neck=dict(type='FPN', in_channels=out_channels, out_channels=16,
                  num_outs=5),
        rpn_head=dict(
            type='RPNHead', in_channels=16, feat_channels=16,
            anchor_generator=dict(type='AnchorGenerator', scales=[8],
                                  ratios=[0.5, 1.0, 2.0],
                                  strides=[4, 8, 16, 32, 64]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder')),
        roi_head=dict(
            type='StandardRoIHead',
            bbox_roi_extractor=dict(
                roi_layer=dict(type='RoIAlign', output_size=7,
                               sampling_ratio=0), **roi),
            bbox_head=dict(type='Shared2FCBBoxHead', in_channels=16,
                           fc_out_channels=32, roi_feat_size=7,
                           num_classes=3),
            mask_roi_extractor=dict(
                roi_layer=dict(type='RoIAlign', output_size=14,
                               sampling_ratio=0), **roi),
            mask_head=dict(type='FCNMaskHead', num_convs=1, in_channels=16,
                           conv_out_channels=16, num_classes=3)),
        train_cfg=None,
        test_cfg=dict(
            rpn=dict(nms_pre=100, max_per_img=100,
                     nms=dict(type='nms', iou_threshold=0.7),
                     min_bbox_size=0),
            rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5),
                      max_per_img=10, mask_thr_binary=0.5)))


def upernet_cfg(frozen_stages: int) -> dict:
    out_channels = list(ConvNeXt(arch=TINY).out_channels)
    norm_cfg = dict(type='BN', requires_grad=True)
    return dict(
        type='EncoderDecoder',
        backbone=dict(type='ConvNeXt', arch=TINY, frozen_stages=frozen_stages),
        decode_head=dict(type='UPerHead', in_channels=out_channels,
                         in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6),
                         channels=16, dropout_ratio=0.1, num_classes=4,
                         norm_cfg=norm_cfg, align_corners=False),
        auxiliary_head=dict(type='FCNHead', in_channels=out_channels[2],
                            in_index=2, channels=8, num_convs=1,
                            concat_input=False, dropout_ratio=0.1,
                            num_classes=4, norm_cfg=norm_cfg,
                            align_corners=False),
        train_cfg=dict(), test_cfg=dict(mode='whole'))


def build_in_scope(scope: str, cfg: dict) -> nn.Module:
    if scope == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    else:
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope(scope):
        return MODELS.build(ConfigDict(cfg))  # mmdet reads cfg.rpn etc.


@pytest.mark.parametrize('frozen_stages', [-1, 1])
@pytest.mark.parametrize('decay_type', ['layer_wise', 'stage_wise'])
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_same_groups_as_openmmlab_constructor(scope, decay_type,
                                              frozen_stages, quiet_logger):
    if scope == 'mmdet':
        from mmdet.engine.optimizers import \
            LearningRateDecayOptimizerConstructor as Official
        model = build_in_scope(scope, mask_rcnn_cfg(frozen_stages))
    else:
        from mmseg.engine.optimizers import \
            LearningRateDecayOptimizerConstructor as Official
        model = build_in_scope(scope, upernet_cfg(frozen_stages))
    wrapper_cfg = dict(
        optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999),
                       weight_decay=0.05))
    paramwise_cfg = dict(decay_rate=0.7, decay_type=decay_type, num_layers=5)
    official = per_param(Official(wrapper_cfg, dict(paramwise_cfg))(model),
                         model)
    ours = per_param(
        ConvNeXtLayerDecayOptimizerConstructor(wrapper_cfg,
                                       dict(paramwise_cfg))(model), model)
    assert ours == official  # bit-identical lr and weight decay
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(ours) == trainable
    assert len({lr for lr, _ in ours.values()}) >= 5


@pytest.mark.parametrize('name,depth2,num_layers', [
    ('mask_rcnn_convnextv2_b', 6, 5), ('upernet_convnextv2_b_512', 8, 6)])
def test_v2_paper_configs_same_groups_as_openmmlab_constructor(
        name, depth2, num_layers, quiet_logger):
    """The V2 paper configs, shrunk, under mmdet's and mmseg's scope: each
    parameter gets the lr and weight decay of mmdet's / mmseg's own
    LearningRateDecayOptimizerConstructor (which takes any backbone whose
    class name contains 'ConvNeXt')."""
    cfg = load(f'convnextv2/{name}')
    cfg = prepare_train_cfg(cfg, work_dir='unused', check_data=False,
                            cfg_options={
                                **tiny_options(cfg),
                                'model.backbone.arch': dict(
                                    _delete_=True, depths=[1, 1, depth2, 1],
                                    dims=list(DIMS)),
                                'optim_wrapper.paramwise_cfg.num_layers':
                                num_layers})
    model = build_model_without_weights(cfg)
    assert type(model.backbone) is ConvNeXtV2
    official = importlib.import_module(
        f'{cfg.default_scope}.engine.optimizers'
    ).LearningRateDecayOptimizerConstructor
    wrapper_cfg = dict(optimizer=dict(cfg.optim_wrapper.optimizer))
    paramwise = dict(cfg.optim_wrapper.paramwise_cfg)
    theirs = per_param(official(wrapper_cfg, dict(paramwise))(model), model)
    ours = per_param(ConvNeXtLayerDecayOptimizerConstructor(
        wrapper_cfg, dict(paramwise))(model), model)
    assert ours == theirs
    assert len({lr for lr, _ in ours.values()}) == (
        num_layers + 2 if paramwise['decay_type'] == 'layer_wise' else 6)


@pytest.mark.parametrize('scope,constructor', [
    ('mmdet', 'ConvNeXtLayerDecayOptimizerConstructor'),
    ('mmseg', 'ConvNeXtLayerDecayOptimizerConstructor'),
    ('mmseg', 'mmengine.ConvNeXtLayerDecayOptimizerConstructor'),
])
def test_config_names_resolve_under_each_scope(scope, constructor):
    model = build_in_scope(scope, mask_rcnn_cfg(-1) if scope == 'mmdet' else
                           upernet_cfg(-1))
    cfg = dict(
        constructor=constructor,
        paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise',
                           num_layers=5),
        optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.05),
        clip_grad=dict(max_norm=1.0))
    with DefaultScope.overwrite_default_scope(scope):
        wrapper = build_optim_wrapper(model, cfg)
    assert 'layer_id' in wrapper.optimizer.param_groups[0]
    assert wrapper.clip_grad_kwargs == dict(max_norm=1.0)


# ------------------------------------- any backbone with get_layer_depth
class DepthOnlyBackbone(nn.Module):
    """Not a ConvNeXt: three Linear layers, id 0..2, and nothing but
    ``get_layer_depth`` (no ``get_layer_id``, no ``depths``)."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(*[nn.Linear(4, 4) for _ in range(3)])
        self.decay_types = set()

    def get_layer_depth(self, param_name: str,
                        decay_type: str = 'layer_wise') -> Tuple[int, int]:
        self.decay_types.add(decay_type)
        return int(param_name.split('.')[1]), 4  # L = 2: ids 0..3


def test_any_backbone_offering_get_layer_depth_is_decayed():
    model = nn.Module()
    model.encoder = DepthOnlyBackbone()
    model.head = nn.Linear(4, 2)
    got = per_param(build(model, dict(decay_rate=2.,
                                      decay_type='stage_wise')), model)
    # decay_rate ** (N - id - 1) with N = 4, base lr 1; the head: top id 3
    for i in range(3):
        assert got[f'encoder.layers.{i}.weight'] == (2.0**(3 - i), 0.05)
        assert got[f'encoder.layers.{i}.bias'] == (2.0**(3 - i), 0.)
    assert got['head.weight'] == (1.0, 0.05)
    assert model.encoder.decay_types == {'stage_wise'}
    with pytest.raises(ValueError,
                       match=r'num_layers=6 .*\(DepthOnlyBackbone\), which '
                       r'needs num_layers=2.*set num_layers=2'):
        build(model, dict(decay_rate=2., num_layers=6))


def test_get_layer_depth_is_get_layer_id_and_the_id_count():
    model = ConvNeXt(arch=dict(depths=S_DEPTHS, dims=DIMS))
    for decay_type in ('layer_wise', 'stage_wise'):
        for name, _ in model.named_parameters():
            assert model.get_layer_depth(name, decay_type=decay_type) == (
                model.get_layer_id(name, 12, decay_type), 14), name
    assert model.get_layer_depth('stages.2.26.gamma') == (11, 14)


def test_backbones_needing_different_num_layers_are_an_error():
    model = nn.Module()
    model.small = ConvNeXt(arch=dict(depths=T_DEPTHS, dims=DIMS))
    model.large = ConvNeXt(arch=dict(depths=S_DEPTHS, dims=DIMS))
    with pytest.raises(ValueError,
                       match=r"need different num_layers.*\('small', "
                       r"'ConvNeXt', 6\), \('large', 'ConvNeXt', 12\)"):
        build(model, dict(decay_rate=0.7))


def test_get_layer_depth_of_mmpretrain_form_is_not_taken():
    """mmpretrain's ``get_layer_depth(param_name, prefix='')`` would read a
    decay type as a prefix; such a module is no backbone of this one."""

    class PrefixForm(nn.Linear):

        def get_layer_depth(self, param_name: str, prefix: str = ''):
            return 0, 2

    model = nn.Module()
    model.backbone = PrefixForm(4, 4)
    with pytest.raises(TypeError, match=r'no convnext_backbone.ConvNeXt.*'
                       r'get_layer_depth\(param_name, decay_type\)'):
        build(model, dict(decay_rate=0.7))
