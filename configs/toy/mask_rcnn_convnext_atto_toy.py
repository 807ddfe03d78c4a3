# Mask R-CNN, ConvNeXt-atto, on the generated toy set (data/toy_coco):
# the CPU demo of `make demo`. Same model/schedule/runtime `_base_` pieces,
# the same layer-wise lr decay and the same tools as the paper configs; what
# differs is sized for 2 CPU cores and 128x128 images with 7-64 px objects,
# trained from scratch (no ImageNet download here).
_base_ = [
    '../_base_/models/mask_rcnn_convnext_fpn.py',
    '../_base_/schedules/coco_adamw_3x.py', '../_base_/runtime_det.py'
]
from convnext_backbone.presets import out_channels  # noqa: E402

arch = 'atto'
fpn_channels = 64
# The classes tools/lib/toy_data.py draws (TOY_DET_CLASSES/PALETTE; a test
# checks they agree). Stated here because a config must load without the
# repository's tools (mmdet's own tools/train.py loads it too).
classes = ('square', 'circle', 'triangle', 'star')
palette = [(220, 40, 40), (40, 170, 60), (40, 90, 220), (240, 190, 30)]
num_classes = len(classes)
model = dict(
    backbone=dict(
        arch=arch, drop_path_rate=0.1, layer_scale_init_value=1e-6,
        # NCHW: measured faster than channels-last for training atto on
        # the 2-core CPU (0.62-0.68 vs 0.71-0.73 s/iter, toy UperNet: 4-15%
        # less time; docs/benchmarks.md). Larger presets and inference favour
        # channels-last, the backbone's default.
        channels_last=False,
        init_cfg=None),
    neck=dict(in_channels=out_channels(arch),
              out_channels=fpn_channels),
    rpn_head=dict(
        in_channels=fpn_channels, feat_channels=fpn_channels,
        # Images are upscaled to 256: objects of 14-128 px; base anchors
        # 16 px at stride 4 (COCO configs use 32 px).
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=fpn_channels),
        bbox_head=dict(in_channels=fpn_channels, fc_out_channels=256,
                       num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=fpn_channels),
        mask_head=dict(in_channels=fpn_channels,
                       conv_out_channels=fpn_channels,
                       num_classes=num_classes)),
    # At most 6 objects per image: far fewer proposals than COCO's 1000.
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100)))

dataset_type = 'CocoDataset'
data_root = 'data/toy_coco/'
metainfo = dict(classes=classes, palette=palette)
img_scale = (256, 256)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(
    batch_size=4, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type, data_root=data_root, metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=0, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type, data_root=data_root, metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'), test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric', ann_file=data_root + 'annotations/instances_val.json',
    metric=['bbox', 'segm'], format_only=False)
test_evaluator = val_evaluator

max_epochs = 8
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=100),
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min_ratio=0.05,
         begin=0, end=max_epochs, by_epoch=True, convert_to_iter_based=True)
]
# The COCO schedule's AdamW and layer-wise decay (num_layers inferred from
# atto: 5); from scratch a higher lr than the fine-tuning configs.
optim_wrapper = dict(
    optimizer=dict(lr=1e-3),
    paramwise_cfg=dict(decay_rate=0.9),
    clip_grad=dict(max_norm=10.0))
auto_scale_lr = dict(base_batch_size=4)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
log_processor = dict(window_size=10)
randomness = dict(seed=0)
# custom_hooks (RandomStateHook: exact resume) come from the runtime base.
