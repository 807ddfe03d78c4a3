"""A straightforward formulation of ConvNeXt V1 and V2, as the official code
writes it.

The yardstick for :class:`~convnext_backbone.ConvNeXt` and
:class:`~convnext_backbone.ConvNeXtV2`: NCHW activations, each block
permuting to NHWC and back, a separate ``gamma`` multiply (V1), GRN as the
official ``models/utils.py`` of facebookresearch/ConvNeXt-V2 writes it (V2),
and LayerNorm over channels written out by hand (mean, variance, normalise,
affine) for the stem, the downsampling layers and the output norms. Nothing
in it is tuned, so that the tests can check the fast backbone's outputs and
gradients against it and ``tools/analysis/benchmark.py`` can print every
figure also as a ratio to it.

Parameter names are the official ones, the same as the backbone's, so one
``state_dict`` loads into both (``strict=False`` where the backbone was built
with fewer stages or output norms).
"""
from typing import Dict, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp

from convnext_backbone.blocks import ConvNeXtBlock
from convnext_backbone.presets import NUM_STAGES, resolve_arch


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over dim 1 of an NCHW tensor, by hand (official code)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ReferenceGRN(nn.Module):
    """GRN as the official code writes it (``models/utils.py``), on NHWC;
    ``gamma``/``beta`` of shape (C,) like the backbone's."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ReferenceBlock(ConvNeXtBlock):
    """The official block: dwconv, permute, LN, Linear, GELU, (V2: GRN),
    Linear, (V1: gamma), permute back, drop path, residual.

    The layers (and so the parameter names and mmcv's ``DropPath``, which
    lets one seed drop the same samples in both) are the backbone block's;
    the forward is the official one, with torch's own ``nn.LayerNorm``.
    """

    def __init__(self, dim: int, drop_path: float,
                 layer_scale_init_value: float, grn: bool = False) -> None:
        super().__init__(dim, drop_path, layer_scale_init_value,
                         fused_inference=False)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.grn = ReferenceGRN(4 * dim) if grn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.dwconv(x).permute(0, 2, 3, 1)
        x = self.act(self.pwconv1(self.norm(x)))
        if self.grn is not None:
            x = self.grn(x)
        x = self.pwconv2(x)
        if self.gamma is not None:
            x = self.gamma * x
        return shortcut + self.drop_path(x.permute(0, 3, 1, 2))


class ReferenceConvNeXt(nn.Module):
    """All four stages of a ConvNeXt, each output through its own hand-written
    channels-first LayerNorm ``norm{i}``.

    Args:
        arch (str | dict): A preset name or ``dict(depths=..., dims=...)``,
            as for the backbone. Defaults to 'tiny'.
        drop_path_rate (float): Stochastic depth, linear over all blocks.
            Defaults to 0.
        layer_scale_init_value (float): Initial ``gamma``; 0: none.
            Defaults to 1e-6.
        with_cp (bool): Checkpoint each block (non-reentrant) while
            training. Defaults to False.
        grn (bool): GRN after GELU in every block (ConvNeXt V2). Defaults to
            False.
    """

    def __init__(self,
                 arch: Union[str, Dict[str, Sequence[int]]] = 'tiny',
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-6,
                 with_cp: bool = False,
                 grn: bool = False) -> None:
        super().__init__()
        settings = resolve_arch(arch)
        depths, dims = settings['depths'], settings['dims']
        self.with_cp = with_cp
        self.downsample_layers = nn.ModuleList([
            nn.Sequential(
                nn.Conv2d(3, dims[0], 4, stride=4),
                ChannelsFirstLayerNorm(dims[0]))
        ] + [
            nn.Sequential(
                ChannelsFirstLayerNorm(dims[i - 1]),
                nn.Conv2d(dims[i - 1], dims[i], 2, stride=2))
            for i in range(1, NUM_STAGES)
        ])
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.stages = nn.ModuleList()
        for i in range(NUM_STAGES):
            first = sum(depths[:i])
            self.stages.append(nn.Sequential(*[
                ReferenceBlock(dims[i], rates[first + j],
                               layer_scale_init_value, grn)
                for j in range(depths[i])
            ]))
            self.add_module(f'norm{i}', ChannelsFirstLayerNorm(dims[i]))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outs = []
        for i in range(NUM_STAGES):
            x = self.downsample_layers[i](x)
            for block in self.stages[i]:
                if self.with_cp and x.requires_grad:
                    x = cp.checkpoint(block, x, use_reentrant=False)
                else:
                    x = block(x)
            outs.append(getattr(self, f'norm{i}')(x))
        return tuple(outs)


class ReferenceConvNeXtV2(ReferenceConvNeXt):
    """ConvNeXt V2 (GRN after GELU, no layer scale) in the official
    formulation: the yardstick of :class:`~convnext_backbone.ConvNeXtV2`.

    Args:
        arch (str | dict): A preset name or ``dict(depths=..., dims=...)``.
            Defaults to 'tiny'.
        drop_path_rate (float): Stochastic depth, linear over all blocks.
            Defaults to 0.
        with_cp (bool): Checkpoint each block (non-reentrant) while
            training. Defaults to False.
    """

    def __init__(self,
                 arch: Union[str, Dict[str, Sequence[int]]] = 'tiny',
                 drop_path_rate: float = 0.,
                 with_cp: bool = False) -> None:
        super().__init__(arch, drop_path_rate, layer_scale_init_value=0.,
                         with_cp=with_cp, grn=True)
