# ADE20K with 640x640 crops from (2560, 640), as in the official ConvNeXt
# runs of the IN-22K models: mmseg 1.x's own 640x640 dataset base, with 2
# images per GPU and the multi-scale test of ade20k_512.py at (2560, 640).
_base_ = 'mmseg::_base_/datasets/ade20k_640x640.py'
img_scale = (2560, 640)
train_dataloader = dict(batch_size=2)

# Multi-scale + flip test (`tools/test.py --tta`). As in the official runs,
# each ratio scales `img_scale` (mmseg 1.x's base scales the raw image by
# the ratio instead).
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(
                    type='Resize',
                    scale=(int(img_scale[0] * r), int(img_scale[1] * r)),
                    keep_ratio=True) for r in img_ratios
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ],
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')],
        ])
]
