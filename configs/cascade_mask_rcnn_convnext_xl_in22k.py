# Cascade Mask R-CNN, ConvNeXt-XL (IN-22K pretrained), COCO 3x.
# Paper (Table 3): 55.2 box AP / 47.7 mask AP on val2017.
# The L config (fp32, lr 1e-4, layer decay 0.7) with the XL backbone.
_base_ = './cascade_mask_rcnn_convnext_l_in22k.py'
from convnext_backbone.presets import out_channels  # noqa: E402

arch = 'xlarge'
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_xlarge_22k_224.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch=arch, drop_path_rate=0.8, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=out_channels(arch)))
