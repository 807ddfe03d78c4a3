# ADE20K (150 classes, `reduce_zero_label`), 512x512 crops: mmseg 1.x's own
# dataset base, whose pipelines are those of the official ConvNeXt runs of
# the IN-1K models (random resize of (2048, 512) by 0.5-2.0, crop with
# cat_max_ratio 0.75, flip, photometric distortion; test: resize to
# (2048, 512), the model's sliding window does the rest), with 2 images per
# GPU (mmseg's base: 4) and the official runs' multi-scale test.
_base_ = 'mmseg::_base_/datasets/ade20k.py'
img_scale = (2048, 512)
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
