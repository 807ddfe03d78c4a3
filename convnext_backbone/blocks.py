"""The ConvNeXt V1 and V2 blocks and their fast inference path.

Parameter names follow the official repositories (``dwconv``, ``norm``,
``pwconv1``, ``pwconv2``, V1's ``gamma``, V2's ``grn.gamma``/``grn.beta``),
so that official ImageNet files load with the fewest renames.
"""
import functools
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .drop_path import DropPath
from .grn import GRN
from .layernorm import LayerNormLast


@functools.lru_cache(maxsize=None)
def onednn_fusion_available() -> bool:
    """Whether this torch has oneDNN's fused ``Linear + GELU`` and ``Linear +
    add`` CPU kernels (the ones torch.compile's inductor emits) and they agree
    with the unfused ops on a small probe.

    They are private operators (``torch.ops.mkldnn._linear_pointwise``), so
    they are probed once instead of trusted; without them the unfused ops run.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        op = torch.ops.mkldnn._linear_pointwise
        gen = torch.Generator().manual_seed(0)
        x, w1, w2 = (torch.randn(*shape, generator=gen)
                     for shape in ((2, 3, 5, 8), (16, 8), (8, 16)))
        b1, b2, res = torch.zeros(16), torch.ones(8), torch.ones(2, 3, 5, 8)
        with torch.no_grad():
            h = op(x, w1, b1, 'gelu', [], 'none')
            out = op.binary(h, res, w2, b2, 'add')
            expected = F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2) + res
    except (AttributeError, RuntimeError, TypeError):
        return False
    return torch.allclose(out, expected, rtol=1e-4, atol=1e-5)


class ConvNeXtBlock(nn.Module):
    """dwconv 7x7 -> LN -> Linear(C, 4C) -> GELU -> Linear(4C, C) -> gamma
    -> drop path -> residual.

    The input is an NCHW tensor in either memory format; the block works in
    NHWC (``permute`` views), so a channels-last input runs without a single
    layout copy and the output keeps the input's memory format.

    ``gamma`` is folded into ``pwconv2`` (``gamma * (W h + b) == (gamma W) h +
    gamma b``): one pass over the activations less, and one saved activation
    less in training. When autograd does not record the block (eval,
    ``no_grad``, frozen stages) it runs without intermediate allocations:
    in-place GELU and residual add, and on CPU oneDNN kernels that fuse the
    bias, GELU and residual add into the matrix multiplies (see
    ``tools/analysis/benchmark.py`` for the measured effect).

    Args:
        dim (int): Number of channels.
        drop_path (float): Stochastic-depth rate of this block. Defaults to 0.
        layer_scale_init_value (float): Initial value of ``gamma``; 0 or less
            disables layer scale. Defaults to 1e-6.
        fused_inference (bool): Allow the oneDNN fused CPU kernels when
            autograd does not record. Defaults to True.
    """

    def __init__(self,
                 dim: int,
                 drop_path: float = 0.,
                 layer_scale_init_value: float = 1e-6,
                 fused_inference: bool = True) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNormLast(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(
            layer_scale_init_value * torch.ones(dim)
        ) if layer_scale_init_value > 0 else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 \
            else nn.Identity()
        self.fused_inference = fused_inference
        # gamma-folded pwconv2 for the inference path, keyed by the storage
        # and version of the parameters it was computed from (an optimizer
        # step or load_state_dict changes the version and so refreshes it).
        self._folded: Optional[Tuple[tuple, torch.Tensor, torch.Tensor]] = None

    def _scaled_pwconv2(self) -> Tuple[torch.Tensor, torch.Tensor]:
        weight, bias = self.pwconv2.weight, self.pwconv2.bias
        if self.gamma is None:
            return weight, bias
        return weight * self.gamma[:, None], bias * self.gamma

    def _cached_scaled_pwconv2(self) -> Tuple[torch.Tensor, torch.Tensor]:
        params = (self.pwconv2.weight, self.pwconv2.bias, self.gamma)
        key = tuple((p.data_ptr(), p._version, p.dtype) for p in params
                    if p is not None)
        if self._folded is None or self._folded[0] != key:
            with torch.no_grad():
                self._folded = (key, *self._scaled_pwconv2())
        return self._folded[1], self._folded[2]

    def _hidden(self, y: torch.Tensor, inplace: bool) -> torch.Tensor:
        """The ``4C`` hidden activations after GELU (NHWC) on their way to
        ``pwconv2``: unchanged in V1, normalised by GRN in V2."""
        return y

    def _records_autograd(self, x: torch.Tensor) -> bool:
        return torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.parameters()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Under torch.compile / torch.export / jit tracing (ONNX export) the
        # plain ops are traced: inductor fuses them itself, exporters know
        # no private oneDNN ops, and the weight cache would be baked in.
        if (self._records_autograd(x) or torch.compiler.is_compiling()
                or torch.jit.is_tracing()
                or (self.training and isinstance(self.drop_path, DropPath))):
            y = self.dwconv(x).permute(0, 2, 3, 1)  # NHWC view: LN, Linear
            y = self._hidden(self.act(self.pwconv1(self.norm(y))), False)
            y = F.linear(y, *self._scaled_pwconv2()).permute(0, 3, 1, 2)
            return x + self.drop_path(y)
        return self._forward_inference(x)

    def _forward_inference(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        weight, bias = self._cached_scaled_pwconv2()
        if (self.fused_inference and y.device.type == 'cpu'
                and y.dtype == torch.float32
                and not torch.is_autocast_enabled('cpu')
                and onednn_fusion_available()):
            fused = torch.ops.mkldnn._linear_pointwise
            y = fused(y, self.pwconv1.weight, self.pwconv1.bias, 'gelu', [],
                      'none')
            y = self._hidden(y, True)
            return fused.binary(y, x.permute(0, 2, 3, 1), weight, bias,
                                'add').permute(0, 3, 1, 2)
        y = self._hidden(torch.ops.aten.gelu_(self.pwconv1(y)), True)
        y = F.linear(y, weight, bias).permute(0, 3, 1, 2)
        # In place only where it keeps the dtype ``x + y`` would give (an
        # fp32 input with an autocast fp16/bf16 branch promotes to fp32).
        return y.add_(x) if y.dtype == x.dtype else x + y


class ConvNeXtV2Block(ConvNeXtBlock):
    """dwconv 7x7 -> LN -> Linear(C, 4C) -> GELU -> GRN -> Linear(4C, C) ->
    drop path -> residual (Woo et al., CVPR 2023, Fig. 5; official
    ``models/convnextv2.py`` ``Block``).

    No layer scale: "we add the GRN layer after the dimension-expansion MLP
    layer and drop LayerScale as it becomes redundant" (paper, Section 4).
    Everything else, the fast inference path included, is
    :class:`ConvNeXtBlock`'s: GRN sits after GELU, so oneDNN's fused
    ``Linear + GELU`` still computes ``pwconv1`` and GELU, GRN then runs in
    place on its output, and ``pwconv2`` is fused with the residual add.

    Args:
        dim (int): Number of channels.
        drop_path (float): Stochastic-depth rate of this block. Defaults to 0.
        fused_inference (bool): Allow the oneDNN fused CPU kernels when
            autograd does not record. Defaults to True.
    """

    def __init__(self,
                 dim: int,
                 drop_path: float = 0.,
                 fused_inference: bool = True) -> None:
        super().__init__(dim, drop_path, layer_scale_init_value=0.,
                         fused_inference=fused_inference)
        self.grn = GRN(4 * dim)

    def _hidden(self, y: torch.Tensor, inplace: bool) -> torch.Tensor:
        return self.grn(y, inplace=inplace)
