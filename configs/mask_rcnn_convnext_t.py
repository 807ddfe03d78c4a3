# Mask R-CNN, ConvNeXt-T (IN-1K pretrained), COCO 3x.
# Paper (Table 3): 46.2 box AP / 41.7 mask AP on val2017.
_base_ = [
    './_base_/models/mask_rcnn_convnext_fpn.py',
    './_base_/datasets/coco_instance_ms_crop.py',
    './_base_/schedules/coco_adamw_3x.py', './_base_/runtime_det.py'
]
# mmengine reads a config with imports as an old-style one only if `_base_`
# is assigned first, so the import stays below it.
from convnext_backbone.presets import out_channels  # noqa: E402

arch = 'tiny'
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_tiny_1k_224.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch=arch,
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=out_channels(arch)))

optim_wrapper = dict(
    # Mixed precision, as in the paper's run.
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(decay_rate=0.95, num_layers=6))
