# Cascade Mask R-CNN, ConvNeXt-B (IN-22K pretrained), COCO 3x.
# Paper (Table 3): 54.0 box AP / 46.9 mask AP on val2017.
# The T config with the IN-22K B backbone.
_base_ = './cascade_mask_rcnn_convnext_t.py'
from convnext_backbone.presets import out_channels  # noqa: E402

arch = 'base'
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_base_22k_224.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch=arch, drop_path_rate=0.6, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=out_channels(arch)))

optim_wrapper = dict(
    optimizer=dict(lr=1e-4), paramwise_cfg=dict(decay_rate=0.8, num_layers=12))
