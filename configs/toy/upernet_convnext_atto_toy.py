# UperNet, ConvNeXt-atto, on the generated toy set (data/toy_ade, ADE20K
# layout with reduce_zero_label): the CPU demo of `make demo`. Same model /
# runtime `_base_` pieces (SyncBN included: in one process the runtime falls
# back to BN), stage-wise lr decay as in the paper's ADE20K runs; sized for 2
# CPU cores and trained from scratch.
_base_ = ['../_base_/models/upernet_convnext.py', '../_base_/runtime_seg.py']
from convnext_backbone.presets import out_channels  # noqa: E402

arch = 'atto'
crop_size = (256, 256)
# The classes tools/lib/toy_data.py draws (TOY_SEG_CLASSES/PALETTE; a test
# checks they agree). Stated here because a config must load without the
# repository's tools (mmseg's own tools/train.py loads it too).
classes = ('background', 'square', 'circle', 'triangle', 'star')
palette = [(120, 120, 120), (220, 40, 40), (40, 170, 60), (40, 90, 220),
           (240, 190, 30)]
num_classes = len(classes)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=arch, drop_path_rate=0.1, layer_scale_init_value=1e-6,
        # NCHW: measured faster than channels-last for training atto on
        # the 2-core CPU (0.62-0.68 vs 0.71-0.73 s/iter, toy UperNet: 4-15%
        # less time; docs/benchmarks.md). Larger presets and inference favour
        # channels-last, the backbone's default.
        channels_last=False,
        init_cfg=None),
    decode_head=dict(in_channels=out_channels(arch),
                     channels=64, num_classes=num_classes),
    auxiliary_head=dict(in_channels=out_channels(arch, 2)[0],
                        channels=32, num_classes=num_classes),
    test_cfg=dict(mode='whole'))

# The generated classes are not ADE20K's 150, so the generic dataset class
# with the ADE20K file layout and label convention.
dataset_type = 'BaseSegDataset'
data_root = 'data/toy_ade/'
metainfo = dict(classes=classes, palette=palette)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.75, 1.5),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
dataset = dict(
    type=dataset_type, data_root=data_root, metainfo=metainfo,
    img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(
    batch_size=8, num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        **dataset,
        data_prefix=dict(img_path='images/training',
                         seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        **dataset,
        data_prefix=dict(img_path='images/validation',
                         seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

max_iters = 500
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=50),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=50,
         end=max_iters)
]
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='ConvNeXtLayerDecayOptimizerConstructor',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999),
                   weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise'))
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(window_size=20)
randomness = dict(seed=0)
# custom_hooks (RandomStateHook: exact resume) come from the runtime base.
