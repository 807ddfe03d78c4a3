# Mask R-CNN with a ConvNeXt backbone and FPN: mmdet 3.3's own Mask R-CNN
# base (RPN, 2-fc box head with L1 losses, 4-conv FCN mask head, and its
# train/test settings, which are those of the official ConvNeXt detection
# runs) with ConvNeXt in place of ResNet-50.
# Each config sets backbone `arch`, `drop_path_rate`, `init_cfg` and the FPN
# `in_channels` (ResNet-50's in mmdet's base), derived from the preset table.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvNeXt',
        out_indices=(0, 1, 2, 3),
        # Replaced by the pretrained gamma when the checkpoint loads.
        layer_scale_init_value=1.0))
