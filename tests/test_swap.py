"""swap_backbone: the channel and stride rules on small synthetic configs,
the refusals, and the compatibility matrix: the configs mmdet 3.3 and mmseg
1.2 ship, swapped to ConvNeXt-atto, one training step and one prediction on
CPU each. Run by ``tools/compat_matrix.py``, each matrix case records its
outcome, from which it writes the table of docs/compatibility.md."""
import copy
import logging
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import MODELS, DefaultScope

from convnext_backbone import ConvNeXt, swap_backbone
from convnext_backbone.presets import (ARCH_SETTINGS, DENSE_DROP_PATH,
                                       out_channels)
from convnext_backbone.swap import (SwapError, rewrite_consumers,
                                    stages_for_strides)
from helpers import (MICRO, captured_logs, narrowed_heads, per_stage,
                     randomize_, shipped, step_and_predict)
from tools.lib.compat_record import record_case, recording, swap_fields
from tools.lib.device import adapt_to_device

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ATTO = out_channels('atto')  # [40, 80, 160, 320]


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: the steps are tiny, and on 2 cores shared with
    other work two OpenMP threads mostly wait for each other (measured under
    load: 16-21 s per matrix case with 2 threads, 1-4 s with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def logs():
    """What the current MMLogger emits during the test."""
    with captured_logs(MMLogger.get_current_instance()) as collected:
        yield collected


def micro_cfg(out_indices=(1, 2, 3), **model):
    """A root-scope config whose old backbone is a micro ConvNeXt (outputs
    [16, 32, 64] at strides 8, 16, 32 by default)."""
    model.setdefault('neck', dict(type='FPN', in_channels=out_channels(
        MICRO, out_indices), out_channels=256, num_outs=5))
    return Config(dict(
        model=dict(type='Detector', backbone=dict(
            type='ConvNeXt', arch=MICRO, out_indices=out_indices,
            frozen_stages=0), **model),
        optim_wrapper=dict(
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
            paramwise_cfg=dict(norm_decay_mult=0., custom_keys=dict(
                backbone=dict(lr_mult=0.1))))))


# ------------------------------------------------------------ the rules
def test_neck_channels_strides_and_backbone(logs, tmp_path):
    cfg = micro_cfg()
    before = copy.deepcopy(cfg.to_dict())
    new = swap_backbone(cfg, 'atto', decay_rate=0.8)
    assert cfg.to_dict() == before  # the input is not mutated
    backbone = new.model.backbone
    assert backbone.type == 'ConvNeXt' and backbone.arch == 'atto'
    assert tuple(backbone.out_indices) == (1, 2, 3)
    assert backbone.drop_path_rate == 0.1
    assert backbone.layer_scale_init_value == 1.0
    assert backbone.init_cfg is None
    assert 'frozen_stages' not in backbone  # old-backbone keys dropped
    assert new.model.neck.in_channels == ATTO[1:]
    assert new.model.neck.out_channels == 256  # the neck's own width stays
    assert new.optim_wrapper.constructor == \
        'ConvNeXtLayerDecayOptimizerConstructor'
    assert new.optim_wrapper.paramwise_cfg == dict(decay_rate=0.8,
                                                   decay_type='layer_wise')
    assert 'convnext_backbone' in new.custom_imports.imports
    assert any('norm_decay_mult' in m and 'custom_keys' in m
               for m in logs.messages(logging.WARNING))
    new.dump(str(tmp_path / 'swapped.py'))  # what Runner writes to work_dir
    reloaded = Config.fromfile(str(tmp_path / 'swapped.py'))
    assert reloaded.model.to_dict() == new.model.to_dict()
    assert 'swap_record' not in reloaded  # not a config key


def test_the_record_holds_what_was_probed_and_rewritten():
    new = swap_backbone(micro_cfg(), 'atto')
    record = new.swap_record
    assert (record.old_backbone, record.old_channels, record.old_strides) \
        == ('ConvNeXt', (16, 32, 64), (8, 16, 32))
    assert (record.out_indices, record.new_channels, record.new_strides) \
        == ((1, 2, 3), tuple(ATTO[1:]), (8, 16, 32))
    assert record.rewritten == {
        'model.neck.in_channels': ([16, 32, 64], ATTO[1:])}
    assert copy.deepcopy(new).swap_record == record
    # refused after the probe: the error holds the old levels only
    cfg = micro_cfg(neck=dict(type='FPN', in_channels=[16, 32]))
    with pytest.raises(SwapError, match='does not match') as error:
        swap_backbone(cfg, 'atto')
    assert error.value.swap_record.old_channels == (16, 32, 64)
    assert error.value.swap_record.out_indices == ()
    # refused before the probe: no record
    with pytest.raises(SwapError) as error:
        swap_backbone(micro_cfg(), 'atto', depth=50)
    assert error.value.swap_record is None


def test_every_preset_has_a_dense_drop_path():
    assert set(DENSE_DROP_PATH) == set(ARCH_SETTINGS)


def test_scope_with_its_own_convnext_gets_the_root_name():
    """mmpretrain registers a ConvNeXt of its own, which wins in its scope
    over the root registry's: there the swap names ours 'mmengine.ConvNeXt'
    (checked with a stand-in scope, mmpretrain needs not import)."""
    from mmengine.registry import Registry
    name = 'swap_test_scope'
    child = Registry('model', parent=MODELS, scope=name)
    try:
        child.register_module(name='ConvNeXt', module=torch.nn.Identity)
        cfg = micro_cfg()
        cfg.default_scope = name
        cfg.model.backbone.type = 'mmengine.ConvNeXt'  # the old one
        new = swap_backbone(cfg, 'atto')
        assert new.model.backbone.type == 'mmengine.ConvNeXt'
        with DefaultScope.overwrite_default_scope(name):
            assert type(MODELS.build(new.model.backbone)) is ConvNeXt
            assert type(MODELS.build(dict(type='ConvNeXt'))) is \
                torch.nn.Identity
        assert swap_backbone(micro_cfg(), 'atto').model.backbone.type == \
            'ConvNeXt'  # root scope: the plain name
    finally:
        MODELS._children.pop(name)  # the stand-in scope is this test's


def test_readme_config_example_is_what_the_swap_makes():
    """configs/examples/retinanet_convnext_t_fpn_1x_coco.py, the config
    example of docs/swap_backbone.md over mmdet's own RetinaNet, equals
    swap_backbone's result for that config (but for the _scope_ marks of
    mmdet:: configs)."""
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if k != '_scope_'}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    url = 'https://dl.fbaipublicfiles.com/convnext/convnext_tiny_1k_224.pth'
    swapped = swap_backbone(
        shipped('mmdet', 'retinanet/retinanet_r50_fpn_1x_coco.py'), 'tiny',
        pretrained=url)
    example = Config.fromfile(
        osp.join(REPO, 'configs', 'examples',
                 'retinanet_convnext_t_fpn_1x_coco.py'))
    assert plain(example.to_dict()) == plain(swapped.to_dict())


def test_kwargs_v2_and_pretrained():
    cfg = micro_cfg()
    new = swap_backbone(cfg, 'atto', version=2, drop_path_rate=0.2,
                        with_cp=True, pretrained='ckpt.pth',
                        decay_rate=None)
    backbone = new.model.backbone
    assert backbone.type == 'ConvNeXtV2'
    assert 'layer_scale_init_value' not in backbone
    assert backbone.drop_path_rate == 0.2 and backbone.with_cp
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint='ckpt.pth')
    assert new.optim_wrapper == cfg.optim_wrapper  # decay_rate=None
    assert swap_backbone(cfg, 'T', type='ConvNeXtV2',
                         decay_rate=None).model.backbone.drop_path_rate == 0.4


def test_a_path_or_a_package_config_name_is_loaded(tmp_path):
    """``swap_backbone('configs/x.py')``, the natural first try, and
    ``'mmdet::...'`` load the config; what cannot be loaded is a SwapError
    naming it."""
    cfg = micro_cfg()
    path = tmp_path / 'micro.py'
    cfg.dump(str(path))
    from_path = swap_backbone(str(path), 'atto')
    from_cfg = swap_backbone(cfg, 'atto')
    for key in ('model', 'optim_wrapper', 'custom_imports'):
        assert from_path[key].to_dict() == from_cfg[key].to_dict(), key
    named = swap_backbone('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
                          'atto', decay_rate=None)
    assert named.model.neck.in_channels == ATTO
    with pytest.raises(SwapError, match='no config file at .*missing.py'):
        swap_backbone(str(tmp_path / 'missing.py'), 'atto')
    with pytest.raises(SwapError, match="cannot load the config 'mmdet::"):
        swap_backbone('mmdet::no_such/config.py', 'atto')
    with pytest.raises(SwapError, match='not dict'):
        swap_backbone(cfg.to_dict(), 'atto')


def test_the_kept_optimizer_is_named_or_the_recipe_replaces_it(logs):
    """A ConvNeXt put into an SGD model keeps SGD (a warning names it and
    the switch); ``recipe='convnext'`` gives the paper's AdamW."""
    cfg = micro_cfg()
    cfg.optim_wrapper.optimizer = dict(type='SGD', lr=0.01, momentum=0.9,
                                       weight_decay=0.0001)
    cfg.auto_scale_lr = dict(enable=False, base_batch_size=8)
    kept = swap_backbone(cfg, 'atto')
    assert kept.optim_wrapper.optimizer == cfg.optim_wrapper.optimizer
    warnings = [m for m in logs.messages(logging.WARNING)
                if 'optimizer is kept' in m]
    assert len(warnings) == 1, logs.messages(logging.WARNING)
    assert 'SGD (lr=0.01, momentum=0.9' in warnings[0]
    assert "recipe='convnext'" in warnings[0] and 'AdamW' in warnings[0]

    new = swap_backbone(cfg, 'atto', recipe='convnext', decay_rate=0.9)
    assert new.optim_wrapper.optimizer == dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05)
    assert new.optim_wrapper.constructor == \
        'ConvNeXtLayerDecayOptimizerConstructor'
    assert new.optim_wrapper.paramwise_cfg == dict(decay_rate=0.9,
                                                   decay_type='layer_wise')
    assert new.auto_scale_lr == dict(enable=False, base_batch_size=16)
    assert cfg.optim_wrapper.optimizer.type == 'SGD'  # input not mutated
    assert len([m for m in logs.messages(logging.WARNING)
                if 'optimizer is kept' in m]) == 1  # no warning this time
    with pytest.raises(SwapError, match="unknown recipe 'adamw'"):
        swap_backbone(cfg, 'atto', recipe='adamw')
    with pytest.raises(SwapError, match='give its decay_rate'):
        swap_backbone(cfg, 'atto', recipe='convnext', decay_rate=None)


@pytest.mark.parametrize('kwargs, match', [
    (dict(out_indices=(0, 1)), r"unknown backbone argument\(s\) "
     r"\['out_indices'\].*derived"),
    (dict(depth=50), r"\['depth'\]"),
    (dict(version=2, layer_scale_init_value=1.0), 'no layer scale'),
    (dict(pretrained='a.pth', init_cfg=dict(type='Pretrained')),
     'both pretrained'),
    (dict(type='ResNet'), "type='ConvNeXt'"),
])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(SwapError, match=match):
        swap_backbone(micro_cfg(), 'atto', **kwargs)


def test_bad_preset_is_refused():
    with pytest.raises(ValueError, match="unknown ConvNeXtV2 arch 'small'"):
        swap_backbone(micro_cfg(), 'small', version=2)


def test_stages_for_strides():
    assert stages_for_strides([4, 8, 16, 32]) == (0, 1, 2, 3)
    assert stages_for_strides([32]) == (3, )
    assert stages_for_strides([4, 8, 8, 8]) == (0, 1, 2, 3)  # dilated
    assert stages_for_strides([8, 8]) == (1, 2)
    with pytest.raises(SwapError, match='output 4 at stride 64.*no ConvNeXt '
                       'stage'):
        stages_for_strides([4, 8, 16, 32, 64])
    with pytest.raises(SwapError, match='output 0 at stride 2'):
        stages_for_strides([2, 4])
    with pytest.raises(SwapError, match='output 1 at stride 8'):
        stages_for_strides([16, 8])
    with pytest.raises(SwapError, match='output 4 at stride 32'):
        stages_for_strides([4, 8, 16, 32, 32])


OLD = [256, 512, 1024, 2048]


def heads(**model):
    return rewrite_consumers(model, OLD, ATTO), model


def test_heads_with_in_index_and_c1():
    _, model = heads(
        decode_head=dict(type='DepthwiseSeparableASPPHead', in_channels=2048,
                         in_index=3, c1_in_channels=256, channels=512),
        auxiliary_head=[dict(in_channels=1024, in_index=-2),
                        dict(in_channels=[512, 2048], in_index=(1, 3))],
        panoptic_fusion_head=dict(num_classes=3))
    assert model['decode_head']['in_channels'] == ATTO[3]
    assert model['decode_head']['c1_in_channels'] == ATTO[0]
    assert model['decode_head']['channels'] == 512
    assert model['auxiliary_head'][0]['in_channels'] == ATTO[2]
    assert model['auxiliary_head'][1]['in_channels'] == [ATTO[1], ATTO[3]]
    # a head of the neck's outputs is not the backbone's
    _, model = heads(neck=dict(in_channels=OLD),
                     rpn_head=dict(in_channels=256))
    assert model['neck']['in_channels'] == ATTO
    assert model['rpn_head']['in_channels'] == 256
    # a neck without in_channels (GlobalAveragePooling): the heads consume
    _, model = heads(neck=[dict(type='GlobalAveragePooling')],
                     head=dict(in_channels=OLD, strides=[4, 8, 16, 32]))
    assert model['head']['in_channels'] == ATTO
    changes = rewrite_consumers(model := dict(head=dict(
        in_channels=[256], strides=[8])), [256], [80], [8], [16])
    assert model['head'] == dict(in_channels=[80], strides=[16])
    assert changes == {'model.head.in_channels': ([256], [80]),
                       'model.head.strides': ([8], [16])}
    rewrite_consumers(model := dict(head=dict(in_channels=2048)), [2048],
                      [320])
    assert model['head']['in_channels'] == 320  # one output, no in_index


@pytest.mark.parametrize('model, match', [
    (dict(decode_head=dict(in_channels=1024, in_index=3)),
     r'model\.decode_head\.in_channels=1024: 1024 at in_index 3 does not '
     r'match what the old backbone produced there \(2048\)'),
    (dict(decode_head=[dict(in_channels=2048, in_index=3),
                       dict(in_channels=[256, 512], in_index=[0])]),
     r'model\.decode_head\.1\.in_channels=\[256, 512\] does not fit '
     r'model\.decode_head\.1\.in_index=\[0\]'),
    (dict(decode_head=dict(in_channels=2048, in_index=4)),
     r'model\.decode_head\.in_index=4: index 4 is no output'),
    (dict(decode_head=dict(in_channels=2048)),
     r'model\.decode_head\.in_channels=2048 does not match.*produced '
     r'channels \[256, 512, 1024, 2048\].*needs in_index'),
    (dict(neck=dict(in_channels=[512, 1024, 2048])),
     r'model\.neck\.in_channels=\[512, 1024, 2048\] does not match'),
    (dict(decode_head=dict(in_channels=2048, in_index=3,
                           skip_in_channels=256)),
     r'model\.decode_head\.skip_in_channels=256 holds a channel count of '
     r'the old backbone'),
    (dict(decode_head=dict(in_channels=2048, in_index=3, c1_in_channels=512)),
     r'model\.decode_head\.c1_in_channels=512 is the channels of output 0'),
    (dict(decode_head=dict(num_classes=3)), 'found nothing that consumes'),
    (dict(roi_head=dict(bbox_roi_extractor=dict(out_channels=1024),
                        bbox_head=dict(in_channels=2048)),
          rpn_head=dict(in_channels=OLD)),
     r'model\.roi_head\.bbox_roi_extractor\.out_channels=1024: '
     r'model\.roi_head takes the backbone outputs directly'),
])
def test_refusals_name_the_key(model, match):
    with pytest.raises(SwapError, match=match):
        heads(**model)


def test_dilated_backbone_is_mapped_with_a_warning(logs):
    cfg = shipped('mmseg', 'fcn/fcn_r50-d8_4xb2-40k_cityscapes-512x1024.py')
    new = swap_backbone(cfg, 'atto')
    assert new.swap_record.old_channels == tuple(OLD)
    assert new.swap_record.old_strides == (4, 8, 8, 8)
    assert tuple(new.model.backbone.out_indices) == (0, 1, 2, 3)
    warnings = logs.messages(logging.WARNING)
    assert any('strides (4, 8, 8, 8)' in m and '(4, 8, 16, 32)' in m
               for m in warnings), warnings


def test_mmseg_pretrained_and_imagenet_preprocessor(logs):
    """mmseg's base configs set model.pretrained, which EncoderDecoder hands
    to the backbone: the swap drops it and the model builds."""
    cfg = shipped('mmseg', 'fcn/fcn_r50-d8_4xb2-40k_cityscapes-512x1024.py')
    cfg.model.data_preprocessor.bgr_to_rgb = False
    assert cfg.model.pretrained == 'open-mmlab://resnet50_v1c'
    new = swap_backbone(cfg, 'atto', pretrained='atto.pth')
    assert 'pretrained' not in new.model
    assert new.model.backbone.init_cfg.checkpoint == 'atto.pth'
    assert new.model.data_preprocessor.bgr_to_rgb is True
    assert any('bgr_to_rgb: False -> True' in m
               for m in logs.messages(logging.WARNING))
    adapt_to_device(new, distributed=False, cuda=False)
    with DefaultScope.overwrite_default_scope(new.default_scope):
        model = MODELS.build(new.model)
    assert isinstance(model.backbone, ConvNeXt)
    assert model.backbone.init_cfg['checkpoint'] == 'atto.pth'


def test_mmdet_zoo_checkpoint_loads(tmp_path):
    """mmdet's ConvNeXt zoo checkpoints are whole detectors with
    mmpretrain's ConvNeXt under ``backbone.`` (its block names, the dense
    norms norm0..3): they load into the swapped backbone, norms included."""
    source = randomize_(ConvNeXt(MICRO), seed=3)
    state = {}
    for key, value in source.state_dict().items():
        for ours, theirs in (('.dwconv.', '.depthwise_conv.'),
                             ('.pwconv1.', '.pointwise_conv1.'),
                             ('.pwconv2.', '.pointwise_conv2.')):
            key = key.replace(ours, theirs)
        state['backbone.' + key] = value
    state['neck.lateral_convs.0.conv.weight'] = torch.randn(256, 8, 1, 1)
    state['rpn_head.rpn_conv.weight'] = torch.randn(256, 256, 3, 3)
    path = str(tmp_path / 'mask-rcnn_convnext-micro_coco.pth')
    torch.save({'meta': {'mmdet_version': '3.3.0'}, 'state_dict': state},
               path)
    cfg = shipped('mmdet', 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py')
    new = swap_backbone(cfg, MICRO, pretrained=path)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(new.model)
    model.init_weights()
    loaded = model.backbone.state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded[key], value), key


# ------------------------------------------------- compatibility matrix
def det_inputs(with_mask=False, with_semantic=False):
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(2, (3, 128, 128), num_items=[3, 2],
                          num_classes=10, with_mask=with_mask,
                          with_semantic=with_semantic)


def seg_inputs(num_classes=19, size=128):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 256, (3, size, size), generator=gen,
                                    dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(
            img_shape=(size, size), ori_shape=(size, size),
            pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=torch.randint(
            0, num_classes, (1, size, size), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def check_boxes(pred, masks=False):
    instances = pred.pred_instances
    assert instances.bboxes.ndim == 2 and instances.bboxes.shape[1] == 4
    assert len(instances.scores) == len(instances.labels) == len(instances)
    if masks:  # at the original scale (demo inputs: scale_factor 1.1)
        assert instances.masks.ndim == 3
        assert instances.masks.shape[0] == len(instances)


def check_panoptic(pred):
    assert pred.pred_panoptic_seg.sem_seg.shape[1:] == pred.ori_shape
    check_boxes(pred, masks=True)


def check_seg(pred):
    assert pred.pred_sem_seg.data.shape == (1, 128, 128)
    assert pred.seg_logits.data.shape[1:] == (128, 128)


DET, INS, SEG = 'det', 'ins', 'seg'


def roi_small(cfg):
    """Two-stage detectors: heads 1/16 wide (helpers.narrowed_heads), 100
    proposals, 16 sampled RoIs per stage, 5 detections (CPU RoIAlign is
    what takes the time)."""
    opts = narrowed_heads(cfg.model)
    opts.update(per_stage(cfg.model.train_cfg.rcnn, 'model.train_cfg.rcnn',
                          'sampler.num', 16))
    opts.update({'model.train_cfg.rpn_proposal.max_per_img': 100,
                 'model.test_cfg.rpn.max_per_img': 100,
                 'model.test_cfg.rcnn.max_per_img': 5})
    return opts


def dense_small(cfg):
    """One-stage detectors: heads 1/16 wide, 100 boxes before NMS."""
    return dict(narrowed_heads(cfg.model), **{'model.test_cfg.nms_pre': 100})


def nms_small(cfg):
    """100 boxes before NMS (FCOS: its GroupNorm heads keep their width)."""
    return {'model.test_cfg.nms_pre': 100}


def m2f_small(head, points_key, **extra):
    """Mask2Former: 10 queries, one pixel-decoder layer, three decoder
    layers (one per feature level), 256 sampled points."""
    def options(cfg):
        opts = {f'{head}.num_queries': 10,
                f'{head}.pixel_decoder.encoder.num_layers': 1,
                f'{head}.transformer_decoder.num_layers': 3,
                points_key: 256}
        opts.update(extra)
        return opts
    return options


def detr_small(**extra):
    """DETR family: 30 queries, one encoder and one decoder layer."""
    return lambda cfg: dict({'model.num_queries': 30,
                             'model.encoder.num_layers': 1,
                             'model.decoder.num_layers': 1}, **extra)


def seg_small(cfg, **extra):
    """mmseg: 128 px batches (the configs pad to their crop size)."""
    return dict({'model.data_preprocessor.size': (128, 128)}, **extra)


def solo_small(cfg):
    """SOLOv2: coarser grids, narrower kernel branch (GroupNorm keeps
    multiples of 32), 50 masks before NMS."""
    return {'model.mask_head.num_grids': [12, 10, 8, 6, 4],
            'model.mask_head.feat_channels': 64,
            'model.mask_head.stacked_convs': 2,
            'model.test_cfg.nms_pre': 50, 'model.test_cfg.max_per_img': 10}


def unchanged(cfg):
    return {}


NO_PAD = {'model.data_preprocessor.batch_augments': None}
# (framework, architecture, shipped config, data, check, shrink(cfg))
MATRIX = [
    ('mmdet', 'Faster R-CNN', 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
     DET, check_boxes, roi_small),
    ('mmdet', 'RetinaNet', 'retinanet/retinanet_r50_fpn_1x_coco.py', DET,
     check_boxes, dense_small),
    ('mmdet', 'FCOS', 'fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py', DET,
     check_boxes, nms_small),
    ('mmdet', 'Cascade R-CNN', 'cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py',
     DET, check_boxes, roi_small),
    ('mmdet', 'HTC', 'htc/htc_r50_fpn_1x_coco.py', 'htc',
     lambda p: check_boxes(p, masks=True), roi_small),
    ('mmdet', 'Mask2Former (instance)',
     'mask2former/mask2former_r50_8xb2-lsj-50e_coco.py', INS,
     lambda p: check_boxes(p, masks=True),
     m2f_small('model.panoptic_head', 'model.train_cfg.num_points',
               **NO_PAD)),
    ('mmdet', 'Mask2Former (panoptic)',
     'mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py', 'pan',
     check_panoptic,
     m2f_small('model.panoptic_head', 'model.train_cfg.num_points',
               **NO_PAD)),
    ('mmdet', 'DINO', 'dino/dino-4scale_r50_8xb2-12e_coco.py', DET,
     check_boxes,
     detr_small(**{'model.dn_cfg.group_cfg.num_dn_queries': 10})),
    ('mmdet', 'Deformable DETR',
     'deformable_detr/deformable-detr_r50_16xb2-50e_coco.py', DET,
     check_boxes, detr_small()),
    ('mmdet', 'RTMDet-Ins', 'rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py', INS,
     lambda p: check_boxes(p, masks=True), unchanged),
    ('mmdet', 'SOLOv2', 'solov2/solov2_r50_fpn_1x_coco.py', INS,
     lambda p: check_boxes(p, masks=True), solo_small),
    ('mmseg', 'FCN', 'fcn/fcn_r50-d8_4xb2-40k_cityscapes-512x1024.py', SEG,
     check_seg, seg_small),
    ('mmseg', 'PSPNet', 'pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
     SEG, check_seg, seg_small),
    ('mmseg', 'DeepLabV3+',
     'deeplabv3plus/deeplabv3plus_r50-d8_4xb2-40k_cityscapes-512x1024.py',
     SEG, check_seg, seg_small),
    ('mmseg', 'UperNet', 'upernet/upernet_r50_4xb2-40k_cityscapes-512x1024.py',
     SEG, check_seg, seg_small),
    ('mmseg', 'Mask2Former',
     'mask2former/mask2former_r50_8xb2-90k_cityscapes-512x1024.py', SEG,
     check_seg, m2f_small('model.decode_head',
                          'model.decode_head.train_cfg.num_points',
                          **seg_small(None))),
    ('mmseg', 'SegFormer',
     'segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py', SEG, check_seg,
     seg_small),
    ('mmseg', 'OCRNet', 'ocrnet/ocrnet_hr18_4xb2-40k_cityscapes-512x1024.py',
     SEG, check_seg, seg_small),
]


def inputs_for(data, cfg):
    if data == SEG:
        decode = cfg.model.decode_head
        head = decode[-1] if isinstance(decode, list) else decode
        return seg_inputs(head.num_classes)
    return det_inputs(with_mask=data in (INS, 'htc', 'pan'),
                      with_semantic=data in ('htc', 'pan'))


# Shipped configs swap_backbone refuses, with why (framework, architecture,
# shipped config, the error it must raise).
REFUSED = [
    # C4: the RoI head takes the stride-16 C4 map itself (RoI extractor of
    # 1024 channels, then ResNet's stage 4 as shared head); which of its
    # layers consume the backbone is not in the config.
    ('mmdet', 'Faster R-CNN C4',
     'faster_rcnn/faster-rcnn_r50-caffe_c4-1x_coco.py',
     r'model\.roi_head\.bbox_roi_extractor\.out_channels=1024: '
     r'model\.roi_head takes the backbone outputs directly \(no neck\)'),
]


def record(case, outcome, result, note=''):
    """The case's outcome for tools/compat_matrix.py (when it runs us):
    ``outcome`` is what swap_backbone returned or raised."""
    if recording():
        record_case(**dict(zip(('framework', 'architecture', 'config'), case)),
                    **swap_fields(outcome), result=result, note=note)


@pytest.mark.parametrize('case', MATRIX, ids=[c[1] for c in MATRIX])
def test_matrix(case):
    framework, _, config, data, check, shrink = case
    cfg = shipped(framework, config)
    new = None
    try:
        new = swap_backbone(cfg, 'atto')
        new.merge_from_dict(shrink(new))
        adapt_to_device(new, distributed=False, cuda=False)
        assert 'convnext_backbone' in new.custom_imports.imports
        preds = step_and_predict(new.model, new.optim_wrapper,
                                 new.default_scope, inputs_for(data, new))
        assert len(preds) == 2
        for pred in preds:
            check(pred)
    except Exception as exc:
        record(case, exc if new is None else new, 'fail',
               note=f'{type(exc).__name__}: {exc}')
        raise
    record(case, new, 'pass')


@pytest.mark.parametrize('case', REFUSED, ids=[c[1] for c in REFUSED])
def test_matrix_refused(case):
    framework, _, config, match = case
    cfg = shipped(framework, config)
    with pytest.raises(SwapError, match=match) as error:
        swap_backbone(cfg, 'atto')
    record(case, error.value, 'clear error', note=str(error.value))
