# UperNet with a ConvNeXt backbone, as in the official ConvNeXt ADE20K runs:
# UPerHead (pool scales 1, 2, 3, 6; 512 channels) and an auxiliary FCN head
# on stage index 2 (256 channels, one conv, loss weight 0.4), SyncBN,
# dropout 0.1, align_corners=False, 150 classes.
# Each config sets backbone `arch`, `drop_path_rate`, `init_cfg`, the heads'
# `in_channels` (derived from the preset table, never retyped), the
# preprocessor `size` (= crop) and the sliding-window `test_cfg`.
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255),
    backbone=dict(
        type='ConvNeXt',
        out_indices=(0, 1, 2, 3),
        # Replaced by the pretrained gamma when the checkpoint loads.
        layer_scale_init_value=1.0),
    decode_head=dict(
        type='UPerHead',
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
