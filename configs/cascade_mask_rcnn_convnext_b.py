# Cascade Mask R-CNN, ConvNeXt-B (IN-1K pretrained), COCO 3x.
# Paper (Table 3): 52.7 box AP / 45.6 mask AP on val2017.
# The T config with the B backbone; lr 2e-4 as for T.
_base_ = './cascade_mask_rcnn_convnext_t.py'
from convnext_backbone.presets import out_channels  # noqa: E402

arch = 'base'
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_base_1k_224.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch=arch, drop_path_rate=0.7, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=out_channels(arch)))

optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.8, num_layers=12))
