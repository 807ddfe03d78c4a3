# mmdet's own RetinaNet config with ConvNeXt-T as its backbone: what
# convnext_backbone.swap_backbone(cfg, 'tiny', pretrained=...) makes of
# mmdet::retinanet/retinanet_r50_fpn_1x_coco.py, written as a config
# (tests/test_swap.py checks that the two agree).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['convnext_backbone'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='ConvNeXt', arch='tiny', out_indices=(0, 1, 2, 3), drop_path_rate=0.4, layer_scale_init_value=1.0, init_cfg=dict(type='Pretrained', checkpoint='https://dl.fbaipublicfiles.com/convnext/convnext_tiny_1k_224.pth')),  # noqa: E501
    neck=dict(in_channels=[96, 192, 384, 768]))
optim_wrapper = dict(constructor='ConvNeXtLayerDecayOptimizerConstructor', paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise'))  # noqa: E501
