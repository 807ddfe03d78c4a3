# Cascade Mask R-CNN, ConvNeXt-XL (IN-22K pretrained), COCO 3x.
# Paper (Table 3): 55.2 box AP / 47.7 mask AP on val2017.
_base_ = [
    './_base_/models/cascade_mask_rcnn_convnext_fpn.py',
    './_base_/datasets/coco_instance_ms_crop.py',
    './_base_/schedules/coco_adamw_3x.py', './_base_/runtime_det.py'
]
# mmengine reads a config with imports as an old-style one only if `_base_`
# is assigned first, so the import stays below it.
from convnext_backbone.presets import out_channels  # noqa: E402

arch = 'xlarge'
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_xlarge_22k_224.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch=arch,
        drop_path_rate=0.8,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=out_channels(arch)))

optim_wrapper = dict(
    # fp32: the paper's L/XL runs did not use mixed precision.
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(decay_rate=0.7, num_layers=12))
