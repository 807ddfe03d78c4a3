# UperNet, ConvNeXt-B (IN-1K pretrained), ADE20K 512x512, 160k iters.
# Paper (Table 4): 49.1 mIoU single-scale, 49.9 multi-scale
# (tools/test.py --tta).
# The T config with the B backbone (drop path 0.4 as for T).
_base_ = './upernet_convnext_t_512.py'
from convnext_backbone.presets import out_channels  # noqa: E402

arch = 'base'
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_base_1k_224.pth'  # noqa: E501
model = dict(
    backbone=dict(arch=arch, init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=out_channels(arch)),
    auxiliary_head=dict(in_channels=out_channels(arch, 2)[0]))

optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
