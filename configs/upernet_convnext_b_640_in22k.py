# UperNet, ConvNeXt-B (IN-22K pretrained), ADE20K 640x640, 160k iters.
# Paper (Table 4): 52.6 mIoU single-scale, 53.1 multi-scale
# (tools/test.py --tta).
_base_ = [
    './_base_/models/upernet_convnext.py',
    './_base_/datasets/ade20k_640.py',
    './_base_/schedules/ade20k_adamw_160k.py', './_base_/runtime_seg.py'
]
# mmengine reads a config with imports as an old-style one only if `_base_`
# is assigned first, so the import stays below it.
from convnext_backbone.presets import out_channels  # noqa: E402

arch = 'base'
crop_size = (640, 640)
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_base_22k_224.pth'  # noqa: E501
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=arch,
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=out_channels(arch)),
    auxiliary_head=dict(in_channels=out_channels(arch, 2)[0]),
    # Single-scale test: sliding window of the training crop.
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(426, 426)))

optim_wrapper = dict(
    optimizer=dict(lr=1e-4), paramwise_cfg=dict(num_layers=12))
