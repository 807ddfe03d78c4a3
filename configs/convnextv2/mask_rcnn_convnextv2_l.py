# Mask R-CNN, ConvNeXt V2-L (FCMAE pre-trained on IN-1K), COCO 3x, LSJ.
# Woo et al., "ConvNeXt V2", CVPR 2023, Table 6 (FCMAE row): 54.4 box AP /
# 47.7 mask AP on val2017; FLOPs 875G at (1280, 800).
# Everything as in mask_rcnn_convnextv2_b.py but the backbone.
_base_ = './mask_rcnn_convnextv2_b.py'
# mmengine reads a config with imports as an old-style one only if `_base_`
# is assigned first, so the import stays below it.
from convnext_backbone.presets import out_channels  # noqa: E402

arch = 'large'
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_large_1k_224_fcmae.pt'  # noqa: E501
model = dict(
    backbone=dict(
        arch=arch,
        drop_path_rate=0.5,  # ours, the top of the paper's sweep
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=out_channels(arch)))
