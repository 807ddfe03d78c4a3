# Cascade Mask R-CNN, ConvNeXt-S (IN-1K pretrained), COCO 3x.
# Paper (Table 3): 51.9 box AP / 45.0 mask AP on val2017.
# The T config with the S backbone; lr 2e-4 and layer decay 0.7 as for T.
# S has T's stage widths (96-768), so the FPN in_channels stay as they are.
_base_ = './cascade_mask_rcnn_convnext_t.py'

arch = 'small'
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_small_1k_224.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch=arch, drop_path_rate=0.6,
        init_cfg=dict(checkpoint=pretrained)))

optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
