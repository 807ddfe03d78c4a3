"""ConvNeXt V1 and V2 backbones for OpenMMLab dense prediction (mmdet 3.x,
mmseg 1.x).

Importing the package (``custom_imports=dict(imports=['convnext_backbone'])``
in a config) applies the torch/numpy compatibility fixes and registers
``ConvNeXt`` and ``ConvNeXtV2`` (backbones),
``ConvNeXtLayerDecayOptimizerConstructor``, ``RandomStateHook`` and
``FastInferenceHook`` in
mmengine's root registries, which every OpenMMLab scope falls back to. It
imports torch and mmengine only: nothing of mmcv, mmdet, mmseg or the
repository's tools.
"""
from typing import Any

try:  # setup.py cannot require it: it comes as mmengine or onedl-mmengine
    import mmengine
except ImportError as exc:  # pragma: no cover - checked in a bare venv
    raise ImportError(
        'convnext_backbone needs mmengine 0.10.x, from upstream (pip '
        "install 'mmengine>=0.10.4,<1.0') or the maintained fork (pip "
        'install onedl-mmengine); `make install` (or STACK=onedl) '
        'installs a whole tested stack (docs/stacks.md)') from exc
if not mmengine.__version__.startswith('0.10.'):
    raise ImportError(
        f'convnext_backbone is tested with mmengine 0.10.x, found '
        f"{mmengine.__version__}; pip install 'mmengine>=0.10.4,<0.11' or "
        'onedl-mmengine 0.10.x (docs/stacks.md)')

from . import compat  # noqa: E402

compat.apply()

from .blocks import ConvNeXtBlock, ConvNeXtV2Block  # noqa: E402
from .checkpoint import (CheckpointError, convert_to_convnext,  # noqa: E402
                         load_convnext_checkpoint)
from .convnext import (ConvNeXt, ConvNeXtV2,  # noqa: E402
                       convert_model_state_dict)
from .grn import GRN  # noqa: E402
from .hooks import RandomStateHook  # noqa: E402
from .inference import FastInferenceHook, optimize_for_inference  # noqa: E402
from .layer_decay import get_layer_id_for_convnext  # noqa: E402
from .layernorm import LayerNorm2d  # noqa: E402
from .optim_constructor import \
    ConvNeXtLayerDecayOptimizerConstructor  # noqa: E402
from .presets import ARCH_SETTINGS, out_channels, resolve_arch  # noqa: E402
from .version import __version__  # noqa: E402

# Names of swap.py, imported on first access (PEP 562): every config that
# imports the package (custom_imports, presets) would otherwise load the
# probe and rewrite machinery it never uses.
_SWAP_NAMES = ('SwapError', 'SwapRecord', 'swap_backbone')

__all__ = [
    'ARCH_SETTINGS', 'CheckpointError', 'ConvNeXt', 'ConvNeXtBlock',
    'ConvNeXtLayerDecayOptimizerConstructor', 'ConvNeXtV2', 'ConvNeXtV2Block',
    'FastInferenceHook', 'GRN', 'LayerNorm2d', 'RandomStateHook', 'SwapError',
    'SwapRecord', 'convert_model_state_dict', 'convert_to_convnext',
    'get_layer_id_for_convnext',
    'load_convnext_checkpoint', 'optimize_for_inference', 'out_channels',
    'resolve_arch', 'swap_backbone', '__version__'
]


def __getattr__(name: str) -> Any:
    """The names of swap.py, which is imported on their first access."""
    if name in _SWAP_NAMES:
        from . import swap
        return getattr(swap, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
