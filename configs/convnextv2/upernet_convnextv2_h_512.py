# UperNet, ConvNeXt V2-H (FCMAE pre-trained, IN-1K fine-tuned), ADE20K
# 512x512, 160k iterations.
# Woo et al., "ConvNeXt V2", CVPR 2023, Table 7 (FCMAE row): 55.0 mIoU
# (multi-scale test), 707M parameters, 3272G FLOPs at (2048, 512).
# Everything as in upernet_convnextv2_b_512.py but the backbone.
_base_ = './upernet_convnextv2_b_512.py'
# mmengine reads a config with imports as an old-style one only if `_base_`
# is assigned first, so the import stays below it.
from convnext_backbone.presets import out_channels  # noqa: E402

arch = 'huge'
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/im1k/convnextv2_huge_1k_224_ema.pt'  # noqa: E501
model = dict(
    backbone=dict(arch=arch, init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=out_channels(arch)),
    auxiliary_head=dict(in_channels=out_channels(arch, 2)[0]))
