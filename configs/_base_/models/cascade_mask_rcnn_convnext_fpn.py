# Cascade Mask R-CNN with a ConvNeXt backbone and FPN: mmdet 3.3's own
# Cascade Mask R-CNN base (RPN with smooth L1 beta 1/9 and 2000 proposals per
# training image, three stages with IoU thresholds 0.5 / 0.6 / 0.7, FCN mask
# head with 4 convs) with ConvNeXt in place of ResNet-50, and the box heads of
# the official ConvNeXt runs: ConvFCBBoxHead (4 shared convs with SyncBN + 1
# shared fc), class-specific regression of decoded boxes with GIoU loss
# (weight 10).
# Each config sets backbone `arch`, `drop_path_rate`, `init_cfg` and the FPN
# `in_channels` (ResNet-50's in mmdet's base), derived from the preset table.
_base_ = 'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvNeXt',
        out_indices=(0, 1, 2, 3),
        # Replaced by the pretrained gamma when the checkpoint loads.
        layer_scale_init_value=1.0),
    roi_head=dict(
        # One head per stage; only the regression target stds differ.
        bbox_head=[
            dict(
                type='ConvFCBBoxHead',
                num_shared_convs=4,
                num_shared_fcs=1,
                in_channels=256,
                conv_out_channels=256,
                fc_out_channels=1024,
                roi_feat_size=7,
                num_classes=80,
                bbox_coder=dict(
                    type='DeltaXYWHBBoxCoder',
                    target_means=[0., 0., 0., 0.],
                    target_stds=target_stds),
                reg_class_agnostic=False,
                reg_decoded_bbox=True,
                norm_cfg=dict(type='SyncBN', requires_grad=True),
                loss_cls=dict(
                    type='CrossEntropyLoss',
                    use_sigmoid=False,
                    loss_weight=1.0),
                loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
            for target_stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                                [0.033, 0.033, 0.067, 0.067])
        ]))
