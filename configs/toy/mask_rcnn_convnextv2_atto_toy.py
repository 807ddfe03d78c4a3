# Mask R-CNN, ConvNeXt V2-atto, on the generated toy set (data/toy_coco):
# mask_rcnn_convnext_atto_toy.py with the V2 backbone (GRN after GELU, no
# layer scale; Woo et al., CVPR 2023), trained from scratch like it.
_base_ = './mask_rcnn_convnext_atto_toy.py'

model = dict(
    backbone=dict(
        type='ConvNeXtV2',
        # V2 has no layer scale (the V1 toy config sets one).
        layer_scale_init_value=None))
