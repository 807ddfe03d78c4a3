# UperNet, ConvNeXt-S (IN-1K pretrained), ADE20K 512x512, 160k iters.
# Paper (Table 4): 48.7 mIoU single-scale, 49.6 multi-scale
# (tools/test.py --tta).
_base_ = [
    './_base_/models/upernet_convnext.py',
    './_base_/datasets/ade20k_512.py',
    './_base_/schedules/ade20k_adamw_160k.py', './_base_/runtime_seg.py'
]
# mmengine reads a config with imports as an old-style one only if `_base_`
# is assigned first, so the import stays below it.
from convnext_backbone.presets import out_channels  # noqa: E402

arch = 'small'
crop_size = (512, 512)
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_small_1k_224.pth'  # noqa: E501
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=arch,
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=out_channels(arch)),
    auxiliary_head=dict(in_channels=out_channels(arch, 2)[0]),
    # Single-scale test: sliding window of the training crop.
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

optim_wrapper = dict(
    optimizer=dict(lr=1e-4), paramwise_cfg=dict(num_layers=12))
