# Cascade Mask R-CNN, ConvNeXt-B (IN-22K pretrained), COCO 3x.
# Paper (Table 3): 54.0 box AP / 46.9 mask AP on val2017.
# The IN-1K B config (layer decay 0.8) with the IN-22K weights, drop path 0.6
# and lr 1e-4.
_base_ = './cascade_mask_rcnn_convnext_b.py'

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_base_22k_224.pth'  # noqa: E501
model = dict(
    backbone=dict(
        drop_path_rate=0.6, init_cfg=dict(checkpoint=pretrained)))

optim_wrapper = dict(optimizer=dict(lr=1e-4))
