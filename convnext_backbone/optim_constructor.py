"""The optimizer-wrapper constructor of ConvNeXt's layer-wise lr decay.

Wires the pure rule of :mod:`convnext_backbone.layer_decay` into mmengine,
for mmdet and mmseg alike. The backbone is found by what it offers (a
``get_layer_depth(param_name, decay_type)`` method that returns a
parameter's layer id and the number of ids, as mmpretrain's backbones
return them), not by its class, so this module neither imports the backbone
nor knows ConvNeXt's depths.
"""
import inspect
import logging
import math
import numbers
from typing import Dict, List, Optional, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

from .layer_decay import DECAY_TYPES

PARAMWISE_KEYS = ('decay_rate', 'decay_type', 'num_layers')


def offers_layer_decay(module: nn.Module) -> bool:
    """Whether a module is a backbone this constructor can decay: it has a
    ``get_layer_depth(param_name, decay_type)`` method returning
    ``(layer_id, number of ids)``.

    mmpretrain's backbones have a ``get_layer_depth(param_name, prefix)``
    with no ``decay_type``; they are not taken (their second argument would
    silently read ``'layer_wise'`` as a prefix).
    """
    method = getattr(module, 'get_layer_depth', None)
    if not callable(method):
        return False
    try:
        return 'decay_type' in inspect.signature(method).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin)
        return False


def find_layer_decay_backbones(
        model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The outermost modules of a model that offer layer decay (see
    :func:`offers_layer_decay`), such as this package's ConvNeXt backbones.

    Args:
        model (nn.Module): A detector, segmentor, a wrapper of one (DDP's
            ``module.``) or a bare backbone.

    Returns:
        list[tuple[str, nn.Module]]: ``(prefix, backbone)`` in module order;
        the prefix is ``''`` when ``model`` is the backbone itself.
    """
    found: List[Tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if offers_layer_decay(module) and not any(
                name.startswith(f'{prefix}.') for prefix, _ in found):
            found.append((name, module))
    return found


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ConvNeXtLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Optimizer wrapper with the paper's layer-wise lr decay for ConvNeXt.

    Every trainable parameter of a backbone gets its layer id from the
    backbone's ``get_layer_depth(param_name, decay_type)`` (ConvNeXt's:
    :func:`get_layer_id_for_convnext`), which also gives the number of ids
    ``L + 2``; parameters outside the backbone get the top id ``L + 1``.
    Any module offering that method is decayed, whatever its class (see
    :func:`offers_layer_decay`). A parameter gets the lr
    ``base_lr * decay_rate ** (L + 1 - id)`` and weight decay 0 if it is 1-D
    or named ``*.bias``, else the optimizer's ``weight_decay``. Frozen
    parameters are left out. Per parameter this gives the same lr and weight
    decay as mmdet's and mmseg's ``LearningRateDecayOptimizerConstructor``,
    but the backbone is found by type anywhere in the model (DDP's
    ``module.``, a backbone not named ``backbone``) instead of by the
    ``backbone.`` name prefix. The optimizer wrapper is built as
    :class:`~mmengine.optim.DefaultOptimWrapperConstructor` builds it, so
    ``type='AmpOptimWrapper'`` and ``clip_grad`` work as usual.

    Registered in mmengine's root registry under its own name only: mmdet
    and mmseg own ``LearningRateDecayOptimizerConstructor``, and mmseg 1.x
    also registers a deprecated BEiT ``LayerDecayOptimizerConstructor``
    that would win under ``default_scope='mmseg'``.

    Each param group carries ``params``, ``param_names``, ``lr`` (absolute:
    mmengine's param schedulers scale it per group), ``weight_decay``,
    ``lr_scale``, ``layer_id`` and ``group_name``
    (``layer_{id}_{decay|no_decay}``, as mmdet names them).

    Args:
        optim_wrapper_cfg (dict): As for the default constructor; its
            ``optimizer`` must set ``lr`` and ``weight_decay``.
        paramwise_cfg (dict): Keys:

            - ``decay_rate`` (float): Required, > 0; the paper uses 0.7-0.95
              on COCO and 0.9 on ADE20K.
            - ``decay_type`` (str): ``'layer_wise'`` (COCO) or
              ``'stage_wise'`` (ADE20K). Defaults to ``'layer_wise'``, as in
              mmdet and mmseg.
            - ``num_layers`` (int, optional): ``L`` of the rule. Defaults to
              the backbone's own, its number of ids less 2 (6 for
              ConvNeXt-T, 12 for S/B/L/XL); a given value must equal it.

    Example:
        >>> # a COCO config (default_scope='mmdet'), ConvNeXt-T Cascade
        >>> optim_wrapper = dict(
        ...     type='AmpOptimWrapper',
        ...     constructor='ConvNeXtLayerDecayOptimizerConstructor',
        ...     paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise',
        ...                        num_layers=6),
        ...     optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999),
        ...                    weight_decay=0.05))
    """

    def __init__(self,
                 optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None) -> None:
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        cfg = self.paramwise_cfg
        self.decay_rate: float = cfg['decay_rate']
        self.decay_type: str = cfg.get('decay_type', 'layer_wise')
        self.num_layers: Optional[int] = cfg.get('num_layers')

    def _validate_cfg(self) -> None:
        """Check paramwise_cfg and the optimizer's lr / weight decay."""
        cfg = self.paramwise_cfg
        example = ("e.g. paramwise_cfg=dict(decay_rate=0.7, "
                   "decay_type='layer_wise', num_layers=6)")
        unknown = sorted(set(cfg) - set(PARAMWISE_KEYS)) if isinstance(
            cfg, dict) else []
        if unknown:
            raise ValueError(
                f'unknown paramwise_cfg key(s) {unknown} for '
                f'ConvNeXtLayerDecayOptimizerConstructor; allowed keys: '
                f"{', '.join(PARAMWISE_KEYS)} ({example})")
        if not isinstance(cfg, dict) or 'decay_rate' not in cfg:
            raise ValueError(
                'ConvNeXtLayerDecayOptimizerConstructor needs paramwise_cfg '
                f'with a decay_rate, got paramwise_cfg={cfg!r}; {example}')
        rate = cfg['decay_rate']
        if (not isinstance(rate, numbers.Real) or isinstance(rate, bool)
                or not math.isfinite(rate) or rate <= 0):
            raise ValueError(
                f'decay_rate={rate!r} must be a number > 0; the paper uses '
                '0.7-0.95 (e.g. 0.7 for Cascade Mask R-CNN ConvNeXt-T)')
        decay_type = cfg.get('decay_type', 'layer_wise')
        if decay_type not in DECAY_TYPES:
            raise ValueError(
                f'unknown decay_type {decay_type!r}; choose one of: '
                f"{', '.join(DECAY_TYPES)} ('layer_wise' for the COCO "
                "configs, 'stage_wise' for the ADE20K ones)")
        num_layers = cfg.get('num_layers')
        if num_layers is not None and (not isinstance(num_layers, int)
                                       or isinstance(num_layers, bool)
                                       or num_layers <= 0):
            raise ValueError(
                f'num_layers={num_layers!r} must be a positive int (6 for '
                'ConvNeXt-T, 12 for S/B/L/XL) or left out to infer it from '
                'the backbone depths')
        if self.base_lr is None or self.base_wd is None:
            raise ValueError(
                f'optimizer={self.optimizer_cfg!r} must set lr and '
                'weight_decay: the group lrs are scaled from lr and '
                'weight_decay is what non-1-D weights get (e.g. '
                "dict(type='AdamW', lr=2e-4, weight_decay=0.05))")

    def _layer_ids(self, prefix: str,
                   backbone: nn.Module) -> Tuple[Dict[int, int], int]:
        """The layer id of each parameter of a backbone, keyed by the
        tensor (so any prefix works), and the backbone's ``L``."""
        ids: Dict[int, int] = {}
        counts = set()
        for rel_name, param in backbone.named_parameters():
            ids[id(param)], count = backbone.get_layer_depth(
                rel_name, decay_type=self.decay_type)
            counts.add(count)
        if len(counts) != 1:
            raise ValueError(
                f'get_layer_depth of the backbone {prefix or "<model>"!r} '
                f'({type(backbone).__name__}) must return one number of '
                f'layer ids (L + 2) for all its parameters, got '
                f"{sorted(counts) or 'none: it has no parameters'}")
        return ids, counts.pop() - 2

    def _resolve_num_layers(self, needed: List[Tuple[str, str, int]]) -> int:
        """``L``: the given num_layers, checked against every backbone's
        ``(prefix, class name, L)``."""
        if self.num_layers is None:
            if len({value for _, _, value in needed}) > 1:
                raise ValueError(
                    f'the backbones of the model need different num_layers '
                    f'(prefix, backbone, num_layers): {needed}; one '
                    'optimizer cannot decay them on one scale, build them '
                    'from one depths preset')
            return needed[0][2]
        for prefix, kind, value in needed:
            if value != self.num_layers:
                raise ValueError(
                    f'paramwise_cfg num_layers={self.num_layers} does not '
                    f'fit the backbone {prefix!r} ({kind}), which needs '
                    f'num_layers={value} (ConvNeXt: 3 + ceil(depths[2] / 3), '
                    f'6 for T, 12 for S/B/L/XL); set num_layers={value} or '
                    'leave it out to infer it')
        return self.num_layers

    def add_params(self, params: List[dict], module: nn.Module,
                   **kwargs) -> None:
        """Add one param group per (layer id, decay / no decay) to params.

        Args:
            params (list[dict]): Param groups, extended in place.
            module (nn.Module): The model (detector, segmentor or a wrapper
                of one) holding a ``convnext_backbone.ConvNeXt`` or another
                backbone offering ``get_layer_depth``.
        """
        backbones = find_layer_decay_backbones(module)
        if not backbones:
            raise TypeError(self._no_backbone_message(module))
        layer_ids: Dict[int, int] = {}
        needed = []
        for prefix, backbone in backbones:
            ids, value = self._layer_ids(prefix, backbone)
            layer_ids.update(ids)
            needed.append((prefix or '<model>', type(backbone).__name__,
                           value))
        num_layers = self._resolve_num_layers(needed)
        top_id = num_layers + 1

        groups: Dict[str, dict] = {}
        num_frozen = 0
        details = []
        for name, param in module.named_parameters():
            if not param.requires_grad:
                num_frozen += 1
                continue
            if param.ndim == 1 or name.endswith('.bias'):
                kind, weight_decay = 'no_decay', 0.
            else:
                kind, weight_decay = 'decay', self.base_wd
            layer_id = layer_ids.get(id(param), top_id)
            group_name = f'layer_{layer_id}_{kind}'
            if group_name not in groups:
                # Same expression as mmdet/mmseg (N = L + 2), so the lrs
                # are bit-identical to theirs.
                scale = self.decay_rate**(num_layers + 2 - layer_id - 1)
                groups[group_name] = dict(
                    params=[],
                    param_names=[],
                    lr=scale * self.base_lr,
                    weight_decay=weight_decay,
                    lr_scale=scale,
                    layer_id=layer_id,
                    group_name=group_name)
            groups[group_name]['params'].append(param)
            groups[group_name]['param_names'].append(name)
            details.append(f'{name}: {group_name}')

        self._log_groups(groups, backbones, num_layers, num_frozen)
        print_log(
            'ConvNeXtLayerDecayOptimizerConstructor parameters:\n' +
            '\n'.join(details),
            logger='current',
            level=logging.DEBUG)
        params.extend(groups.values())

    def _log_groups(self, groups: Dict[str, dict],
                    backbones: List[Tuple[str, nn.Module]], num_layers: int,
                    num_frozen: int) -> None:
        """One INFO table: a row per param group."""
        where = ', '.join(prefix or '<model>' for prefix, _ in backbones)
        lines = [
            'ConvNeXtLayerDecayOptimizerConstructor: '
            f'{self.decay_type} decay, '
            f'decay_rate={self.decay_rate}, num_layers={num_layers} (ids '
            f'0..{num_layers + 1}), lr={self.base_lr}, '
            f'weight_decay={self.base_wd}, backbones at: {where}, '
            f'{num_frozen} frozen tensors left out',
            f"{'group':<20}{'layer_id':>9}{'lr_scale':>12}{'lr':>12}"
            f"{'weight_decay':>14}{'tensors':>9}{'params':>12}"
        ]
        for group in sorted(
                groups.values(),
                key=lambda g: (g['layer_id'], g['group_name'])):
            numel = sum(p.numel() for p in group['params'])
            lines.append(
                f"{group['group_name']:<20}{group['layer_id']:>9}"
                f"{group['lr_scale']:>12.4g}{group['lr']:>12.4g}"
                f"{group['weight_decay']:>14.4g}{len(group['params']):>9}"
                f'{numel:>12,}')
        print_log('\n'.join(lines), logger='current', level=logging.INFO)

    @staticmethod
    def _no_backbone_message(module: nn.Module) -> str:
        children = ', '.join(f'{name}={type(child).__name__}'
                             for name, child in module.named_children())
        others = sorted({
            f'{type(m).__module__}.{type(m).__name__}'
            for m in module.modules() if 'convnext' in type(m).__name__.lower()
        })
        hint = (f' (found {others}, whose parameter names differ; use '
                "mmdet's / mmseg's LearningRateDecayOptimizerConstructor for "
                'those)' if others else '')
        return (f'ConvNeXtLayerDecayOptimizerConstructor found no '
                f'convnext_backbone.ConvNeXt in {type(module).__name__}'
                f'({children or "no children"}){hint}, nor any module with a '
                f'get_layer_depth(param_name, decay_type) method; it only '
                f'applies to models with such a backbone: use the '
                f'DefaultOptimWrapperConstructor (drop constructor= and '
                f'paramwise_cfg) for other backbones')
