# Mask R-CNN, ConvNeXt V2-H (FCMAE pre-trained on IN-1K), COCO 3x, LSJ.
# Woo et al., "ConvNeXt V2", CVPR 2023, Table 6 (FCMAE row): 55.7 box AP /
# 48.9 mask AP on val2017; FLOPs 2525G at (1280, 800).
# As mask_rcnn_convnextv2_l.py (drop path 0.5, ours) with the H backbone.
_base_ = './mask_rcnn_convnextv2_l.py'
# mmengine reads a config with imports as an old-style one only if `_base_`
# is assigned first, so the import stays below it.
from convnext_backbone.presets import out_channels  # noqa: E402

arch = 'huge'
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_huge_1k_224_fcmae.pt'  # noqa: E501
model = dict(
    backbone=dict(arch=arch, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=out_channels(arch)))
