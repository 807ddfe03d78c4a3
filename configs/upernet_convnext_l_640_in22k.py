# UperNet, ConvNeXt-L (IN-22K pretrained), ADE20K 640x640, 160k iters.
# Paper (Table 4): 53.2 mIoU single-scale, 53.7 multi-scale
# (tools/test.py --tta).
# The B 640 config (IN-22K, 640 crops) with the L backbone.
_base_ = './upernet_convnext_b_640_in22k.py'
from convnext_backbone.presets import out_channels  # noqa: E402

arch = 'large'
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_large_22k_224.pth'  # noqa: E501
model = dict(
    backbone=dict(arch=arch, init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=out_channels(arch)),
    auxiliary_head=dict(in_channels=out_channels(arch, 2)[0]))
