"""ConvNeXt V1 and V2 backbones for OpenMMLab dense prediction (mmdet 3.x,
mmseg 1.x).

Importing the package (``custom_imports=dict(imports=['convnext_backbone'])``
in a config) applies the torch/numpy compatibility fixes and registers
``ConvNeXt`` and ``ConvNeXtV2`` (backbones),
``ConvNeXtLayerDecayOptimizerConstructor`` and ``RandomStateHook`` in
mmengine's root registries, which every OpenMMLab scope falls back to. It
imports torch, mmengine and mmcv's DropPath, and nothing of mmdet, mmseg or
the repository's tools.
"""
from . import compat

compat.apply()

from .blocks import ConvNeXtBlock, ConvNeXtV2Block  # noqa: E402
from .checkpoint import (CheckpointError, convert_to_convnext,  # noqa: E402
                         load_convnext_checkpoint)
from .convnext import ConvNeXt, ConvNeXtV2  # noqa: E402
from .grn import GRN  # noqa: E402
from .hooks import RandomStateHook  # noqa: E402
from .layer_decay import get_layer_id_for_convnext  # noqa: E402
from .layernorm import LayerNorm2d  # noqa: E402
from .optim_constructor import \
    ConvNeXtLayerDecayOptimizerConstructor  # noqa: E402
from .presets import ARCH_SETTINGS, out_channels, resolve_arch  # noqa: E402
from .swap import swap_backbone  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = [
    'ARCH_SETTINGS', 'CheckpointError', 'ConvNeXt', 'ConvNeXtBlock',
    'ConvNeXtLayerDecayOptimizerConstructor', 'ConvNeXtV2', 'ConvNeXtV2Block',
    'GRN', 'LayerNorm2d', 'RandomStateHook',
    'convert_to_convnext', 'get_layer_id_for_convnext',
    'load_convnext_checkpoint', 'out_channels', 'resolve_arch', 'swap_backbone',
    '__version__'
]
