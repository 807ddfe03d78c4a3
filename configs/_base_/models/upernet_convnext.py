# UperNet with a ConvNeXt backbone: mmseg 1.2's own UperNet base (UPerHead
# with pool scales 1, 2, 3, 6 and 512 channels; an auxiliary FCN head on
# stage index 2 with 256 channels, one conv, loss weight 0.4; SyncBN, dropout
# 0.1, align_corners=False), as in the official ConvNeXt ADE20K runs, with
# ConvNeXt in place of ResNet-50 and ADE20K's 150 classes.
# Each config sets backbone `arch`, `drop_path_rate`, `init_cfg`, the heads'
# `in_channels` (ResNet-50's in mmseg's base; derived from the preset table),
# the preprocessor `size` (= crop) and the sliding-window `test_cfg`.
_base_ = 'mmseg::_base_/models/upernet_r50.py'
model = dict(
    pretrained=None,  # mmseg's base names ResNet-50 weights here
    backbone=dict(
        _delete_=True,
        type='ConvNeXt',
        out_indices=(0, 1, 2, 3),
        # Replaced by the pretrained gamma when the checkpoint loads.
        layer_scale_init_value=1.0),
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150))
