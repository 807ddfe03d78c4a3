"""ConvNeXt backbone for dense prediction (Liu et al., CVPR 2022).

Parameter names follow the official repository (``downsample_layers``,
``stages.<s>.<b>.{dwconv,norm,pwconv1,pwconv2,gamma}``, ``norm<i>``) so that
official ImageNet files load with the fewest renames and so that the layer-id
rule of the paper's learning-rate decay (written against these names) applies
unchanged. Other layouts are converted by :mod:`convnext_backbone.checkpoint`.
"""
import functools
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from .presets import (NUM_STAGES, STRIDES, normalize_out_indices,
                      out_channels, resolve_arch)


class LayerNormLast(nn.LayerNorm):
    """LayerNorm over the last dim.

    Statistics are always computed in fp32, also under autocast, because the
    variance of fp16/bf16 activations overflows or loses precision; the result
    is cast back to the input dtype.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = F.layer_norm(x.float(), self.normalized_shape,
                             self.weight.float(), self.bias.float(), self.eps)
        return x.to(dtype)


class LayerNorm2d(LayerNormLast):
    """LayerNorm over the channels of an NCHW tensor, fp32 statistics.

    On channels-last memory the permute is a view and ``F.layer_norm`` runs
    over a contiguous last dim: 3.7x the official hand-written formulation
    in inference and 4x in training on CPU (``tools/analysis/benchmark.py
    layernorm``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


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
            y = self.act(self.pwconv1(self.norm(y)))
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
            return fused.binary(y, x.permute(0, 2, 3, 1), weight, bias,
                                'add').permute(0, 3, 1, 2)
        y = torch.ops.aten.gelu_(self.pwconv1(y))
        y = F.linear(y, weight, bias).permute(0, 3, 1, 2)
        # In place only where it keeps the dtype ``x + y`` would give (an
        # fp32 input with an autocast fp16/bf16 branch promotes to fp32).
        return y.add_(x) if y.dtype == x.dtype else x + y


@MODELS.register_module()
class ConvNeXt(BaseModule):
    """ConvNeXt backbone returning multi-scale features for dense prediction.

    Registered in mmengine's root ``MODELS`` registry, so it is found from
    mmdet's, mmseg's and any other OpenMMLab scope once
    ``custom_imports=dict(imports=['convnext_backbone'])`` is in the config.

    Args:
        arch (str | dict): A preset of :data:`~convnext_backbone.presets.
            ARCH_SETTINGS` (``'tiny'``, ``'T'``, ..., ``'atto'``) or
            ``dict(depths=[4 ints], dims=[4 ints])``. Defaults to 'tiny'.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int]): Stages whose outputs are returned, any
            subset of 0..3 (negative counts from the end). Stage ``i`` has
            stride ``4 * 2**i``. Each gets its own LayerNorm ``norm{i}``.
            Stages after the last requested one are not built, so no
            parameter goes unused under DDP. Defaults to (0, 1, 2, 3).
        drop_path_rate (float): Stochastic depth rate, growing linearly from
            0 over all blocks in order. Must be in [0, 1). Defaults to 0.
        layer_scale_init_value (float): Initial ``gamma`` (dense configs of
            the paper use 1.0; a pretrained ``gamma`` replaces it).
            Defaults to 1e-6.
        frozen_stages (int): ``-1`` freezes nothing; ``k`` in 0..3 freezes
            the stem and the downsampling layers ``0..k`` and stages ``0..k``
            (``0``: stem + stage 0; ``3``: the whole trunk). Frozen parts are
            kept in eval mode (no drop path) and get no gradient. The output
            norms ``norm{i}`` are not frozen: they are new for dense tasks.
            Defaults to -1.
        with_cp (bool): Gradient checkpointing of each block (non-reentrant)
            to save memory at the cost of a second forward. Defaults to False.
        channels_last (bool): Keep the activations in channels-last (NHWC)
            memory between blocks, so the blocks' LayerNorm and Linear layers
            need no layout copies and the convolutions run their
            channels-last kernels. ``False`` is the official formulation
            (NCHW between blocks, a permute copy in every block). Outputs
            are NCHW-contiguous either way. Measured on CPU as the faster
            choice (``tools/analysis/benchmark.py``); on CUDA it is what
            the paper's throughput figures use. Defaults to True.
        fused_inference (bool): When autograd does not record a block (eval,
            ``no_grad``, frozen stages) run it on CPU with oneDNN kernels
            that fuse bias, GELU and the residual add into the matrix
            multiplies (if this torch has them, see
            :func:`onednn_fusion_available`). Outputs equal the unfused ops
            within float tolerance. Defaults to True.
        norm_eval (bool): Keep BatchNorm layers (none in the trunk; kept for
            API parity with mmdet's backbones) in eval mode. Defaults to False.
        init_cfg (dict | list[dict], optional): ``dict(type='Pretrained',
            checkpoint=path_or_url, prefix=None)`` loads an ImageNet or dense
            checkpoint in any layout of
            :func:`convnext_backbone.checkpoint.convert_to_convnext`.
            Defaults to None (random init: trunc-normal 0.02, zero bias).
    """

    def __init__(self,
                 arch: Union[str, Dict[str, Sequence[int]]] = 'tiny',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-6,
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 channels_last: bool = True,
                 fused_inference: bool = True,
                 norm_eval: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        settings = resolve_arch(arch)
        self.arch = arch
        self.depths: Tuple[int, ...] = settings['depths']
        self.dims: Tuple[int, ...] = settings['dims']
        self.out_indices = normalize_out_indices(out_indices)
        if not (isinstance(drop_path_rate, (int, float))
                and 0 <= drop_path_rate < 1):
            raise ValueError(
                f'drop_path_rate={drop_path_rate!r} is outside [0, 1); the '
                'paper uses 0.1-0.8 (e.g. 0.4 for ConvNeXt-T on COCO)')
        if (not isinstance(frozen_stages, int)
                or not -1 <= frozen_stages < NUM_STAGES):
            raise ValueError(
                f'frozen_stages={frozen_stages!r} is out of range; use -1 '
                f'(nothing frozen) or 0..{NUM_STAGES - 1} (stem and stages '
                'up to that index frozen)')
        if not isinstance(in_channels, int) or in_channels <= 0:
            raise ValueError(
                f'in_channels={in_channels!r} must be a positive int')
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp
        self.channels_last = channels_last
        self.fused_inference = fused_inference
        self.norm_eval = norm_eval
        self.drop_path_rate = float(drop_path_rate)

        num_built = max(self.out_indices) + 1
        self.downsample_layers = nn.ModuleList()
        self.stages = nn.ModuleList()
        # One rate per block over *all* blocks of the preset, so truncating
        # the trunk (out_indices) does not change the rates of built blocks.
        total = sum(self.depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        for i in range(num_built):
            if i == 0:
                down = nn.Sequential(
                    nn.Conv2d(in_channels, self.dims[0], 4, stride=4),
                    LayerNorm2d(self.dims[0], eps=1e-6))
            else:
                down = nn.Sequential(
                    LayerNorm2d(self.dims[i - 1], eps=1e-6),
                    nn.Conv2d(self.dims[i - 1], self.dims[i], 2, stride=2))
            self.downsample_layers.append(down)
            first = sum(self.depths[:i])
            self.stages.append(nn.Sequential(*[
                ConvNeXtBlock(self.dims[i], rates[first + j],
                              layer_scale_init_value, fused_inference)
                for j in range(self.depths[i])
            ]))
        for i in self.out_indices:
            self.add_module(f'norm{i}', LayerNorm2d(self.dims[i], eps=1e-6))
        if channels_last:
            self.to(memory_format=torch.channels_last)
        self._freeze_stages()

    # ------------------------------------------------------------------ api
    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of the returned features, in output order."""
        return tuple(out_channels(
            dict(depths=self.depths, dims=self.dims), self.out_indices))

    @property
    def out_strides(self) -> Tuple[int, ...]:
        """Strides of the returned features w.r.t. the input."""
        return tuple(STRIDES[i] for i in self.out_indices)

    def get_layer_id(self, param_name: str, num_layers: int,
                     decay_type: str) -> int:
        """Layer id of a parameter of this backbone for lr decay.

        Args:
            param_name (str): Name relative to this module
                (e.g. ``'stages.2.4.dwconv.weight'``).
            num_layers (int): ``L`` of the paper's rule.
            decay_type (str): ``'layer_wise'`` or ``'stage_wise'``.
        """
        from .layer_decay import get_layer_id_for_convnext
        return get_layer_id_for_convnext(param_name, num_layers, decay_type)

    # ------------------------------------------------------------- internals
    def _freeze_stages(self) -> None:
        for i in range(min(self.frozen_stages + 1, len(self.stages))):
            for module in (self.downsample_layers[i], self.stages[i]):
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    def train(self, mode: bool = True) -> 'ConvNeXt':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def init_weights(self) -> None:
        """Random init as the official code, or load ``init_cfg`` Pretrained.

        mmengine's own ``PretrainedInit`` loads keys as they are; ours goes
        through the layout conversion and the match checks of
        :func:`convnext_backbone.checkpoint.load_convnext_checkpoint`.
        """
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from .checkpoint import load_convnext_checkpoint
            unknown = set(cfg) - {'type', 'checkpoint', 'prefix',
                                  'map_location'}
            if unknown or 'checkpoint' not in cfg:
                raise ValueError(
                    f'init_cfg={cfg!r}: Pretrained takes checkpoint=<path or '
                    f'url> and optional prefix/map_location (unknown keys: '
                    f'{sorted(unknown)})')
            load_convnext_checkpoint(
                self, cfg['checkpoint'], prefix=cfg.get('prefix'),
                logger=MMLogger.get_current_instance())
            self._is_init = True
            return
        if cfg is not None:
            super().init_weights()
            return
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        outs = []
        for i, (down, stage) in enumerate(
                zip(self.downsample_layers, self.stages)):
            x = down(x)
            for block in stage:
                if self.with_cp and x.requires_grad:
                    x = cp.checkpoint(block, x, use_reentrant=False)
                else:
                    x = block(x)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x).contiguous())
        return tuple(outs)
