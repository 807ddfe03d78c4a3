# Cascade Mask R-CNN, ConvNeXt-L (IN-22K pretrained), COCO 3x.
# Paper (Table 3): 54.8 box AP / 47.6 mask AP on val2017.
# The T config with the IN-22K L backbone, in fp32.
_base_ = './cascade_mask_rcnn_convnext_t.py'
from convnext_backbone.presets import out_channels  # noqa: E402

arch = 'large'
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_large_22k_224.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch=arch, drop_path_rate=0.7, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=out_channels(arch)))

# fp32: the paper's L/XL runs did not use mixed precision. `_delete_` drops
# the T config's AmpOptimWrapper with its loss_scale; the rest is the
# schedule's (configs/_base_/schedules/coco_adamw_3x.py) with L's lr and
# layer decay.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='ConvNeXtLayerDecayOptimizerConstructor',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_type='layer_wise', decay_rate=0.7, num_layers=12))
