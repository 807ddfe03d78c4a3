"""ConvNeXt backbones for dense prediction: V1 (Liu et al., CVPR 2022) and
V2 (Woo et al., CVPR 2023).

Parameter names follow the official repositories (``downsample_layers``,
``stages.<s>.<b>.{dwconv,norm,pwconv1,pwconv2}``, V1's ``gamma``, V2's
``grn.{gamma,beta}``, ``norm<i>``) so that official ImageNet files load with
the fewest renames and so that the layer-id rule of the paper's
learning-rate decay (written against these names) applies unchanged. Other
layouts are converted by :mod:`convnext_backbone.checkpoint`.
"""
import warnings
from typing import (Dict, List, Mapping, MutableMapping, Optional, Sequence,
                    Tuple, Union)

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.logging import MMLogger, print_log
from mmengine.model import BaseModule
from mmengine.registry import MODELS

from .blocks import ConvNeXtBlock, ConvNeXtV2Block
from .checkpoint import LAYOUTS, adapt_backbone_keys, load_convnext_checkpoint
from .layer_decay import get_layer_id_for_convnext, infer_num_layers
from .layernorm import LayerNorm2d
from .mmpretrain_args import check_mmpretrain_args
from .presets import (NUM_STAGES, STRIDES, normalize_out_indices,
                      out_channels, resolve_arch)


@MODELS.register_module()
class ConvNeXt(BaseModule):
    """ConvNeXt backbone returning multi-scale features for dense prediction.

    Registered in mmengine's root ``MODELS`` registry, so it is found from
    mmdet's, mmseg's and any other OpenMMLab scope once
    ``custom_imports=dict(imports=['convnext_backbone'])`` is in the config.

    Args:
        arch (str | dict): A V1 preset of :data:`~convnext_backbone.presets.
            ARCH_SETTINGS` (``'tiny'``, ``'T'``, ..., ``'atto'``; the V1
            names of ``VERSION_PRESETS``) or ``dict(depths=[4 ints],
            dims=[4 ints])``. Defaults to 'tiny'.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int]): Stages whose outputs are returned, any
            subset of 0..3 (negative counts from the end). Stage ``i`` has
            stride ``4 * 2**i``. Each gets its own LayerNorm ``norm{i}``.
            Stages after the last requested one are not built, so no
            parameter goes unused under DDP. Defaults to (0, 1, 2, 3).
        drop_path_rate (float): Stochastic depth rate, growing linearly from
            0 over all blocks in order. Must be in [0, 1). Defaults to 0.
        layer_scale_init_value (float, optional): Initial ``gamma`` (dense
            configs of the paper use 1.0; a pretrained ``gamma`` replaces
            it); 0 or less: no layer scale. Defaults to None (1e-6).
        frozen_stages (int): The number of stages frozen, counted as
            mmpretrain's ConvNeXt counts them: ``0`` (or ``-1``) freezes
            nothing, ``k`` in 1..4 the first ``k`` stages with their
            downsampling layers (``1``: stem + stage 0; ``4``: the whole
            trunk). Frozen parts are kept in eval mode (no drop path) and get
            no gradient. The output norms ``norm{i}`` are not frozen: they are
            new for dense tasks. In 0.1.0 ``k`` froze ``k + 1`` stages
            (CHANGELOG.md). Defaults to -1.
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
        init_cfg (dict | list[dict], optional): ``dict(type='Pretrained',
            checkpoint=path_or_url, prefix=None)`` loads an ImageNet or dense
            checkpoint in any layout of
            :func:`convnext_backbone.checkpoint.convert_to_convnext`.
            Optional ``map_location`` (default 'cpu') is where the file's
            tensors are loaded. Defaults to None (random init: trunc-normal
            0.02, zero bias).
        pretrained (str, optional): Deprecated, as in mmdet's and mmseg's
            backbones: becomes ``init_cfg=dict(type='Pretrained',
            checkpoint=pretrained)`` with a warning. mmseg's
            ``EncoderDecoder`` passes its ``model.pretrained`` here.
            Defaults to None.
        use_grn (bool): mmpretrain's spelling of ConvNeXt V2: with
            ``layer_scale_init_value=0.`` the blocks are V2 blocks (GRN, no
            layer scale) for any preset, as mmpretrain builds them.
            Defaults to False (``ConvNeXtV2``: True).
        stem_patch_size, norm_cfg, act_cfg, linear_pw_conv,
        gap_before_final_norm: mmpretrain's ConvNeXt arguments, accepted at
            the values that build this backbone (4, LN2d eps 1e-6, GELU,
            either, False) so that mmdet's and mmseg's configs work with
            only their ``type`` changed; other values are refused with the
            reason (:mod:`convnext_backbone.mmpretrain_args`).

    Checkpoints of every supported layout (this package's, the official
    ones, mmpretrain's with ``depthwise_conv`` / ``pointwise_conv``, timm's)
    are converted when they are loaded into a model holding this backbone,
    by whichever loader (``load_from``, ``resume``, ``init_detector``,
    ``load_state_dict``): see :meth:`_load_from_state_dict`.
    """

    # The ConvNeXt generation: which presets exist (presets.VERSION_PRESETS)
    # and which checkpoints fit (checkpoint.load_convnext_checkpoint).
    version = 1

    def __init__(self,
                 arch: Union[str, Dict[str, Sequence[int]]] = 'tiny',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: Optional[float] = None,
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 channels_last: bool = True,
                 fused_inference: bool = True,
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 pretrained: Optional[str] = None,
                 use_grn: Optional[bool] = None,
                 stem_patch_size: int = 4,
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = None,
                 linear_pw_conv: bool = True,
                 gap_before_final_norm: bool = False) -> None:
        name = type(self).__name__
        check_mmpretrain_args(
            name, stem_patch_size=stem_patch_size, norm_cfg=norm_cfg,
            act_cfg=act_cfg, linear_pw_conv=linear_pw_conv,
            gap_before_final_norm=gap_before_final_norm)
        if pretrained is not None and not isinstance(pretrained, str):
            raise TypeError(
                f'{name}: pretrained={pretrained!r} must be a checkpoint path '
                "or URL (str); better, init_cfg=dict(type='Pretrained', "
                'checkpoint=...)')
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError(
                    f'{name} got both pretrained={pretrained!r} and '
                    f'init_cfg={init_cfg!r}; keep only init_cfg=dict('
                    "type='Pretrained', checkpoint=...)")
            warnings.warn(
                f'{name}: pretrained is deprecated, use init_cfg=dict('
                f"type='Pretrained', checkpoint={pretrained!r}) instead",
                DeprecationWarning)
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)
        self.version = self._blocks_version(use_grn, layer_scale_init_value)
        # A preset of the class's version; mmpretrain's use_grn=True builds
        # GRN blocks for any preset of the table, and so do we.
        settings = resolve_arch(arch, version=None if self.version !=
                                type(self).version else self.version)
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
                or isinstance(frozen_stages, bool)
                or not -1 <= frozen_stages <= NUM_STAGES):
            raise ValueError(
                f'frozen_stages={frozen_stages!r} is out of range; use 0 (or '
                f'-1: nothing frozen) or 1..{NUM_STAGES} (that many stages '
                'frozen, with the stem and their downsampling layers, as '
                "mmpretrain's ConvNeXt counts)")
        if not isinstance(in_channels, int) or in_channels <= 0:
            raise ValueError(
                f'in_channels={in_channels!r} must be a positive int')
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp
        self.channels_last = channels_last
        # NCHW-contiguous outputs (what the heads of mmdet / mmseg expect);
        # optimize_for_inference() turns this off for channels-last heads.
        self.contiguous_outputs = True
        self.fused_inference = fused_inference
        self.drop_path_rate = float(drop_path_rate)
        self.layer_scale_init_value = self._layer_scale(layer_scale_init_value)

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
                self._block(self.dims[i], rates[first + j])
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
        return get_layer_id_for_convnext(param_name, num_layers, decay_type)

    def get_layer_depth(self,
                        param_name: str,
                        prefix: str = '',
                        decay_type: Optional[str] = None) -> Tuple[int, int]:
        """Layer id of a parameter and the number of ids, for lr decay.

        Two callers, one answer each:

        - :class:`~convnext_backbone.ConvNeXtLayerDecayOptimizerConstructor`
          passes ``decay_type``: the paper's rule with this backbone's own
          ``L`` (``infer_num_layers(depths)``: 5 for atto..pico, 6 for T and
          nano, 12 for S/B/L/XL), so the constructor needs no knowledge of
          ConvNeXt.
        - mmpretrain's models (``ImageClassifier.get_layer_depth`` calls
          ``backbone.get_layer_depth(name, 'backbone.')`` for its
          ``LearningRateDecayOptimWrapperConstructor``) pass a prefix and no
          ``decay_type``: the answer is mmpretrain's ConvNeXt's, whose ``L``
          is 12 when stage 2 has more than 9 blocks and 6 otherwise (6, not
          5, for atto..pico).

        Args:
            param_name (str): Name of the parameter, under ``prefix``
                (e.g. ``'backbone.stages.2.4.dwconv.weight'``); a name
                outside the prefix (a head) gets the top id.
            prefix (str): Where the backbone sits in the model. Defaults to
                ''.
            decay_type (str, optional): ``'layer_wise'`` or ``'stage_wise'``.
                Defaults to None (mmpretrain's layer-wise rule and ``L``).

        Returns:
            tuple[int, int]: ``(layer_id, L + 2)``: ids run from 0 to
            ``L + 1`` (the top id, also that of parameters outside the
            backbone) and the lr scale is ``decay_rate ** (L + 2 - id - 1)``.
        """
        if decay_type is None:
            num_layers = 12 if self.depths[2] > 9 else 6
            decay_type = 'layer_wise'
        else:
            num_layers = infer_num_layers(self.depths)
        if not param_name.startswith(prefix):
            return num_layers + 1, num_layers + 2
        return (get_layer_id_for_convnext(param_name[len(prefix):],
                                          num_layers, decay_type),
                num_layers + 2)

    # ------------------------------------------------------------- internals
    def _blocks_version(self, use_grn: Optional[bool],
                 layer_scale: Optional[float]) -> int:
        """The ConvNeXt version the blocks are of: the class's, or 2 for
        mmpretrain's ``use_grn=True, layer_scale_init_value=0.``."""
        if not use_grn:
            return type(self).version
        if layer_scale is None or layer_scale > 0:
            raise ValueError(
                f'{type(self).__name__}: use_grn=True with a layer scale '
                f'(layer_scale_init_value={layer_scale!r}) puts GRN and '
                'gamma into the same block, neither ConvNeXt V1 nor V2; for '
                'V2 write use_grn=True, layer_scale_init_value=0. (as '
                "mmpretrain's docs say), or type='ConvNeXtV2'")
        return 2

    def _layer_scale(self, value: Optional[float]) -> Optional[float]:
        """The checked ``layer_scale_init_value`` (V2 has none)."""
        if self.version == 2:
            return None
        return 1e-6 if value is None else float(value)

    def _block(self, dim: int, drop_path: float) -> nn.Module:
        """One block of a stage of width ``dim``."""
        if self.version == 2:
            return ConvNeXtV2Block(dim, drop_path, self.fused_inference)
        return ConvNeXtBlock(dim, drop_path, self.layer_scale_init_value,
                             self.fused_inference)

    def _freeze_stages(self) -> None:
        for i in range(min(max(self.frozen_stages, 0), len(self.stages))):
            for module in (self.downsample_layers[i], self.stages[i]):
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    def _load_from_state_dict(self, state_dict: MutableMapping, prefix: str,
                              *args, **kwargs) -> None:
        """Convert the keys of this backbone to its own layout before torch
        loads them (any loader: ``load_state_dict``, mmengine's
        ``load_checkpoint`` behind ``load_from`` / ``resume`` /
        ``init_detector`` / ``init_model``, whole-model ``Pretrained``).

        torch calls this before it hands the keys to the submodules, so the
        renamed keys are the ones they read. Logs one line when it renamed
        anything; raises :class:`~convnext_backbone.CheckpointError` when the
        keys of the other ConvNeXt version, or only part of the trunk, are
        under this backbone's prefix (see
        :func:`~convnext_backbone.checkpoint.adapt_backbone_keys`).
        """
        adapt_state_dict(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def train(self, mode: bool = True) -> 'ConvNeXt':
        super().train(mode)
        self._freeze_stages()
        return self

    def init_weights(self) -> None:
        """Random init as the official code, or load ``init_cfg`` Pretrained.

        mmengine's own ``PretrainedInit`` loads keys as they are; ours goes
        through the layout conversion and the match checks of
        :func:`convnext_backbone.checkpoint.load_convnext_checkpoint`.
        """
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            unknown = set(cfg) - {'type', 'checkpoint', 'prefix',
                                  'map_location'}
            if unknown or 'checkpoint' not in cfg:
                raise ValueError(
                    f'init_cfg={cfg!r}: Pretrained takes checkpoint=<path or '
                    f'url> and optional prefix/map_location (unknown keys: '
                    f'{sorted(unknown)})')
            load_convnext_checkpoint(
                self, cfg['checkpoint'], prefix=cfg.get('prefix'),
                map_location=cfg.get('map_location', 'cpu'),
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
                out = getattr(self, f'norm{i}')(x)
                outs.append(out.contiguous() if self.contiguous_outputs
                            else out)
        return tuple(outs)


@MODELS.register_module()
class ConvNeXtV2(ConvNeXt):
    """ConvNeXt V2 backbone returning multi-scale features for dense
    prediction (Woo et al., "ConvNeXt V2: Co-designing and Scaling ConvNets
    with Masked Autoencoders", CVPR 2023).

    The V1 backbone with :class:`~.blocks.ConvNeXtV2Block`: GRN after GELU
    and no layer scale. Stem, downsampling, the output LayerNorms
    ``norm{i}``, every argument and option (``out_indices``,
    ``frozen_stages``, ``with_cp``, drop path, ``channels_last``, the fused
    inference path, ``init_cfg`` / the deprecated ``pretrained``), the
    outputs' description (``out_channels`` / ``out_strides``) and the
    layer-id rule of the LR decay (``get_layer_id``, ``get_layer_depth``) are
    :class:`ConvNeXt`'s; see its arguments. Registered in mmengine's root
    ``MODELS`` as ``ConvNeXtV2``, found from every OpenMMLab scope.

    Differences in the arguments:

    - ``arch``: a V2 preset, ``atto``, ``femto``, ``pico``, ``nano``,
      ``tiny``/``T``, ``base``/``B``, ``large``/``L``, ``huge``/``H``
      (V2 has no small or xlarge), or ``dict(depths, dims)``.
    - ``layer_scale_init_value``: V2 has no layer scale; None or 0 (the
      mmpretrain spelling), any value above 0 is an error (a config
      inheriting a V1 one sets it to None).
    - ``use_grn``: True (mmpretrain's V2 spelling) or left out; False is an
      error.
    - ``init_cfg`` Pretrained: any V2 layout of
      :func:`~convnext_backbone.checkpoint.convert_to_convnext` (official
      fine-tuned and FCMAE pre-trained files, timm, mmpretrain, dense); a V1
      checkpoint is an error.
    """

    version = 2

    def _blocks_version(self, use_grn: Optional[bool],
                 layer_scale: Optional[float]) -> int:
        if use_grn is False:
            raise ValueError(
                'ConvNeXtV2 with use_grn=False would be a ConvNeXt V1 (no '
                "GRN); use type='ConvNeXt' for V1, or remove use_grn")
        if layer_scale is not None and layer_scale > 0:
            raise ValueError(
                f'ConvNeXtV2 has no layer scale (layer_scale_init_value='
                f'{layer_scale!r}): V2 drops it, GRN makes it redundant '
                '(paper, Section 4). Leave layer_scale_init_value out, or set '
                'it to None (or 0., as mmpretrain writes V2) in a config that '
                'inherits a V1 backbone')
        return 2


def adapt_state_dict(backbone: ConvNeXt, state_dict: MutableMapping,
                     prefix: str = '') -> str:
    """Put the keys of ``backbone`` (under ``prefix``) of a state dict into
    the backbone's layout, in place; log once what was converted.

    Args:
        backbone (ConvNeXt): The backbone the keys are for.
        state_dict (MutableMapping): Changed in place.
        prefix (str): Where the backbone sits in the model. Defaults to ''.

    Returns:
        str: The layout the keys were in (a key of
        :data:`~convnext_backbone.checkpoint.LAYOUTS`).
    """
    owner = f'{type(backbone).__name__}(arch={backbone.arch!r})'
    layout, changed = adapt_backbone_keys(
        state_dict, prefix, list(backbone.state_dict()), backbone.version,
        owner)
    if changed:
        print_log(
            f"{owner}{f' at {prefix[:-1]!r}' if prefix else ''}: converted "
            f'{changed} checkpoint tensors from the {layout} layout '
            f'({LAYOUTS[layout]})', logger='current')
    return layout


def convert_model_state_dict(model: nn.Module,
                             state_dict: Mapping[str, torch.Tensor]
                             ) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """A whole model's state dict with the keys of every ConvNeXt backbone
    in it converted to this package's layout: what loading it into
    ``model`` will load, for checks that compare keys before loading.

    Args:
        model (nn.Module): A detector, segmentor, classifier, or a backbone.
        state_dict (Mapping[str, Tensor]): Not changed.

    Returns:
        tuple[dict, list[str]]: The converted copy, and the layout found
        under each backbone (``'convnext_backbone'`` where nothing changed).

    Raises:
        CheckpointError: As :func:`adapt_state_dict`.
    """
    converted = dict(state_dict)
    layouts = [adapt_state_dict(module, converted, f'{name}.' if name else '')
               for name, module in model.named_modules()
               if isinstance(module, ConvNeXt)]
    return converted, layouts
