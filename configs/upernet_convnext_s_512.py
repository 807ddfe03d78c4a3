# UperNet, ConvNeXt-S (IN-1K pretrained), ADE20K 512x512, 160k iters.
# Paper (Table 4): 48.7 mIoU single-scale, 49.6 multi-scale
# (tools/test.py --tta).
# The T config with the S backbone. S has T's stage widths (96-768), so the
# heads' in_channels stay as they are.
_base_ = './upernet_convnext_t_512.py'

arch = 'small'
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_small_1k_224.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch=arch, drop_path_rate=0.3,
        init_cfg=dict(checkpoint=pretrained)))

optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
