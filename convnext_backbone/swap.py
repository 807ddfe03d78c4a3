"""Putting ConvNeXt into any OpenMMLab config: :func:`swap_backbone`.

Given a loaded config of an mmdet, mmseg, mmpose or mmpretrain model,
:func:`swap_backbone` returns a copy whose backbone is this package's
ConvNeXt, feeding the same number of levels at the same strides, with every
channel count that consumed the old backbone's outputs rewritten, the
layer-wise LR decay of the paper in the optimizer, and the dense defaults
(drop path, layer scale) of the paper. What it cannot prove correct is an
error naming the config key, never a silent guess.

This module imports nothing of mmdet, mmseg or the other OpenMMLab projects
at import time: the old backbone is built in the config's own scope, whose
registry mmengine imports on demand.
"""
import copy
import dataclasses
import inspect
import logging
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from .consumers import find_consumers
from .convnext import ConvNeXt
from .optim_constructor import PARAMWISE_KEYS
from .presets import (NUM_STAGES, STRIDES, VERSION_CLASSES, dense_drop_path,
                      resolve_arch)
from .presets import out_channels as preset_out_channels

# The normalisation ImageNet checkpoints of ConvNeXt were trained with
# (RGB, 0-255 pixel scale), as mmdet's/mmseg's data preprocessors write it.
IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]
# Head keys whose channels are known to come from the old backbone; other
# ``*in_channels`` keys holding an old channel count are refused.
KNOWN_CHANNEL_KEYS = ('in_channels', 'c1_in_channels')
# Side of the zero image the old backbone is probed with (a multiple of
# 64, so every stride up to 64 divides it); larger only if that fails.
PROBE_SIZES = (128, 256)
# recipe='convnext': the optimizer of the paper's dense runs (AdamW, lr 1e-4
# for a total batch of 16, weight decay 0.05: the Mask R-CNN-T and UperNet-T
# configs), with the layer-wise lr decay of decay_rate.
CONVNEXT_OPTIMIZER = dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                          weight_decay=0.05)
CONVNEXT_BASE_BATCH = 16
RECIPES = ('convnext', )


@dataclasses.dataclass(frozen=True)
class SwapRecord:
    """What :func:`swap_backbone` probed and rewrote, for its caller (the
    compatibility matrix tabulates it) without probing again.

    Read it as ``new_cfg.swap_record`` after a swap, or as
    ``error.swap_record`` of a :class:`SwapError` raised after the probe
    (then only the old levels are filled in).

    Attributes:
        old_backbone (str): ``type`` of the old backbone.
        old_channels (tuple[int, ...]): Channels of its outputs.
        old_strides (tuple[int, ...]): Strides of its outputs.
        out_indices (tuple[int, ...]): The ConvNeXt stages that replace
            them. Empty if the swap was refused.
        new_channels (tuple[int, ...]): Channels of those stages.
        new_strides (tuple[int, ...]): Strides of those stages.
        rewritten (dict): ``{key path: (old value, new value)}`` of every
            consumer key rewritten (``model.neck.in_channels``, ...).
    """
    old_backbone: str
    old_channels: Tuple[int, ...]
    old_strides: Tuple[int, ...]
    out_indices: Tuple[int, ...] = ()
    new_channels: Tuple[int, ...] = ()
    new_strides: Tuple[int, ...] = ()
    rewritten: Dict[str, Tuple[Any, Any]] = dataclasses.field(
        default_factory=dict)


class SwapError(ValueError):
    """A config :func:`swap_backbone` cannot rewrite safely; the message names
    the config key, its value, what the old backbone produced and the fix.

    Attributes:
        swap_record (SwapRecord, optional): The old backbone's levels, when
            the refusal came after the probe; else None.
    """
    swap_record: Optional[SwapRecord] = None


def swap_backbone(cfg: Union[Config, str],
                  arch: Union[str, Dict[str, Sequence[int]]] = 'tiny',
                  *,
                  version: Optional[int] = None,
                  pretrained: Optional[str] = None,
                  decay_rate: Optional[float] = 0.7,
                  recipe: Optional[str] = None,
                  **backbone_kwargs) -> Config:
    """Return a copy of ``cfg`` with ConvNeXt as the backbone.

    The old backbone (``cfg.model.backbone``) is built in the config's
    ``default_scope`` without weights and run once on a zero image to read
    each output's channels and stride. Output ``k`` of stride ``4 * 2**i``
    becomes ConvNeXt stage ``i`` (``out_indices``), so the neck / heads get
    as many levels at the same strides. A dilated backbone (mmseg's
    ``ResNetV1c`` with strides (1, 2, 1, 1): outputs at strides 4, 8, 8, 8)
    cannot keep its strides: its outputs map to the stages in order, with a
    warning naming the change, as mmseg's own ConvNeXt and Swin configs do.

    The consumers of the backbone's outputs
    (:func:`~convnext_backbone.consumers.find_consumers`: the neck, the
    first of a list, if it has ``in_channels``, otherwise every
    ``model.*head``) get the new channels of
    :func:`~convnext_backbone.presets.out_channels`. In a consumer,
    ``in_channels`` equal to the old channel list becomes the new list;
    with ``in_index`` (int or list) each value must equal the old output at
    that index; a scalar without ``in_index`` needs a one-output backbone;
    ``c1_in_channels`` (mmseg's DepthwiseSeparableASPPHead) is output 0.
    Any other ``*in_channels`` key holding an old channel count, or
    (without a neck) a head that does not state its ``in_channels`` but
    holds one inside (mmdet's C4 ``roi_head``), is an error. Layers after
    the neck keep their widths.

    Also: ``optim_wrapper`` gets ``ConvNeXtLayerDecayOptimizerConstructor``
    with ``paramwise_cfg=dict(decay_rate=decay_rate,
    decay_type='layer_wise')`` (other paramwise keys are dropped and
    logged; an optimizer without ``weight_decay`` gets its torch default,
    e.g. 0 for mmpose's Adam); the type is spelled ``'mmengine.ConvNeXt'``
    where the scope has a ConvNeXt of its own (mmpretrain); mmseg's
    ``model.pretrained`` and the old backbone's keys and ``init_cfg`` are
    dropped; ``'convnext_backbone'`` joins ``custom_imports``. Every change
    is logged. The base config's optimizer is kept (e.g. SGD at lr 0.01 in
    mmdet's RetinaNet), with a warning naming it, unless ``recipe='convnext'``
    replaces it by the paper's AdamW.

    Args:
        cfg (Config | str): A loaded config (``Config.fromfile``) with
            ``model.backbone``, not modified; or the path of a config file;
            or a config of an installed OpenMMLab package
            (``'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'``, loaded
            with ``mmengine.hub.get_config``).
        arch (str | dict): A preset of
            :data:`~convnext_backbone.presets.ARCH_SETTINGS` or
            ``dict(depths=[4 ints], dims=[4 ints])``. Defaults to 'tiny'.
        version (int, optional): 2 builds ``ConvNeXtV2`` (no layer scale),
            as ``type='ConvNeXtV2'`` does. Defaults to None (V1, or what
            ``type`` says).
        pretrained (str, optional): Path or URL of an ImageNet or dense
            checkpoint (any layout ``convert_to_convnext`` reads):
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``, and
            the data preprocessor is set to the ImageNet RGB mean / std the
            checkpoints expect (logged if that changes it). Defaults to None
            (random initialisation).
        decay_rate (float, optional): Layer-wise LR decay rate (the paper:
            0.7-0.95 on COCO, 0.9 on ADE20K). None leaves ``optim_wrapper``
            as it is. Defaults to 0.7.
        recipe (str, optional): ``'convnext'`` replaces the optimizer by the
            paper's (``AdamW``, lr 1e-4, betas (0.9, 0.999), weight decay
            0.05, for a total batch of 16: ``auto_scale_lr.base_batch_size``
            is set to 16) under the layer-wise decay of ``decay_rate``; the
            optimizer wrapper's type (AMP or not), clipping and schedule
            stay. Defaults to None (the base config's optimizer, with a
            warning naming it).
        **backbone_kwargs: Arguments of :class:`~convnext_backbone.ConvNeXt`
            (``drop_path_rate``, ``layer_scale_init_value``,
            ``frozen_stages``, ``with_cp``, ``channels_last``, ``init_cfg``,
            ...) overriding the dense defaults: ``drop_path_rate`` of
            :data:`~convnext_backbone.presets.DENSE_DROP_PATH` and
            ``layer_scale_init_value=1.0`` (V1). ``out_indices`` is
            derived, not given.

    Returns:
        Config: The new config; its ``swap_record`` attribute (not a config
        key: not dumped, not pickled) is the :class:`SwapRecord` of what
        was probed and rewritten.

    Raises:
        SwapError: A channel count, index or stride it cannot map, or an
            argument that does not fit; its ``swap_record`` holds the old
            levels if the probe ran.

    Example:
        >>> from mmengine.config import Config
        >>> cfg = Config.fromfile('faster-rcnn_r50_fpn_1x_coco.py')
        >>> cfg = swap_backbone(cfg, 'tiny', pretrained='https://dl.'
        ...     'fbaipublicfiles.com/convnext/convnext_tiny_1k_224.pth')
        >>> cfg.model.neck.in_channels
        [96, 192, 384, 768]
    """
    cfg = _load_config(cfg)
    if recipe is not None and recipe not in RECIPES:
        raise SwapError(f'unknown recipe {recipe!r}; choose one of: '
                        f"{', '.join(RECIPES)}, or None (keep the optimizer)")
    if recipe is not None and decay_rate is None:
        raise SwapError(f'recipe={recipe!r} sets the layer-wise lr decay; '
                        'give its decay_rate (the paper: 0.7-0.95 on COCO, '
                        '0.9 on ADE20K), not None')
    model = cfg.get('model')
    if not isinstance(model, dict) or not isinstance(
            model.get('backbone'), dict):
        raise SwapError(
            f"the config has no model.backbone dict to swap (model keys: "
            f"{sorted(model) if isinstance(model, dict) else model!r}); "
            'load a full model config with Config.fromfile')
    backbone = _new_backbone(arch, version, pretrained, backbone_kwargs)
    new = copy.deepcopy(cfg)
    old_channels, old_strides = probe_backbone(new)
    record = SwapRecord(str(new.model.backbone.get('type')),
                        tuple(old_channels), tuple(old_strides))
    try:
        _rewrite_config(new, backbone, record, arch, pretrained, decay_rate,
                        recipe)
    except SwapError as exc:
        exc.swap_record = record
        raise
    return new


def _load_config(cfg: Union[Config, str]) -> Config:
    """``cfg`` itself, or the config a path or ``package::path`` names."""
    if isinstance(cfg, Config):
        return cfg
    if not isinstance(cfg, str):
        raise SwapError(
            f'swap_backbone takes a Config, a config file path or a '
            f"'mmdet::...' / 'mmseg::...' config name, not "
            f'{type(cfg).__name__}')
    if '::' in cfg:
        from mmengine.hub import get_config
        try:
            return get_config(cfg)
        except Exception as exc:
            raise SwapError(
                f'cannot load the config {cfg!r}: {type(exc).__name__}: '
                f'{exc}; the part before :: must be an installed OpenMMLab '
                "package (mmdet, mmseg, ...) and the rest a config path "
                'inside its configs/') from exc
    if not osp.isfile(cfg):
        raise SwapError(
            f'no config file at {cfg!r}; give a path that exists, a config '
            "of an installed package ('mmdet::retinanet/"
            "retinanet_r50_fpn_1x_coco.py') or a loaded Config")
    return Config.fromfile(cfg)


def _rewrite_config(new: Config, backbone: Dict[str, Any],
                    record: SwapRecord,
                    arch: Union[str, Dict[str, Sequence[int]]],
                    pretrained: Optional[str],
                    decay_rate: Optional[float],
                    recipe: Optional[str]) -> None:
    """The rewrite of :func:`swap_backbone` after the probe, in place; sets
    ``new.swap_record`` to ``record`` completed."""
    model = new.model
    old_backbone = model.backbone
    old_strides = record.old_strides
    stages = stages_for_strides(old_strides)
    new_strides = tuple(STRIDES[i] for i in stages)
    if new_strides != old_strides:
        print_log(
            f'swap_backbone: the old backbone ({record.old_backbone}) '
            f'outputs at strides {old_strides} (dilated); ConvNeXt '
            f'cannot keep them: its stages {stages} output at strides '
            f'{new_strides}, as in mmseg\'s own ConvNeXt/Swin configs (the '
            'heads see coarser features)',
            logger='current', level=logging.WARNING)
    backbone['out_indices'] = stages
    if 'in_channels' in old_backbone and old_backbone['in_channels'] != 3:
        backbone.setdefault('in_channels', old_backbone['in_channels'])
    backbone['type'] = _registered_name(new, backbone['type'])
    new_channels = tuple(preset_out_channels(arch, stages))
    rewritten = rewrite_consumers(model, record.old_channels, new_channels,
                                  old_strides, new_strides)
    changes = [f'{key}: {before} -> {after}'
               for key, (before, after) in rewritten.items()]
    dropped = sorted(set(old_backbone) - {'type'} - set(backbone))
    model['backbone'] = ConfigDict(backbone)
    changes.append(
        f'model.backbone: {record.old_backbone} -> {backbone}'
        + (f' (dropped old keys: {dropped})' if dropped else ''))
    if 'pretrained' in model:  # mmseg: EncoderDecoder passes it on
        changes.append(f'model.pretrained={model.pop("pretrained")!r} '
                       'dropped (weights come from the backbone init_cfg)')
    if pretrained is not None:
        _imagenet_preprocessor(new)  # logs its changes as a warning
    if recipe == 'convnext':
        changes.extend(_convnext_optimizer(new))
    if decay_rate is not None:
        changes.extend(_layer_decay(new, decay_rate))
    if recipe is None:
        _warn_kept_optimizer(new)
    changes.extend(_custom_imports(new))
    print_log('swap_backbone:\n  ' + '\n  '.join(changes), logger='current',
              level=logging.INFO)
    # An attribute of the Config object, not a config key: Config routes
    # attribute writes into the config itself, hence object.__setattr__.
    object.__setattr__(new, 'swap_record', dataclasses.replace(
        record, out_indices=stages, new_channels=new_channels,
        new_strides=new_strides, rewritten=copy.deepcopy(rewritten)))


def _new_backbone(arch: Union[str, Dict[str, Sequence[int]]],
                  version: Optional[int], pretrained: Optional[str],
                  kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The ConvNeXt backbone dict (without out_indices), arguments checked."""
    type_name = kwargs.pop('type', None)
    versions = {name: v for v, name in VERSION_CLASSES.items()}
    if type_name is not None and (type_name not in versions or version
                                  not in (None, versions[type_name])):
        choices = ' or '.join(f'type={name!r} (V{v})'
                              for v, name in VERSION_CLASSES.items())
        raise SwapError(
            f'type={type_name!r} with version={version!r}: use {choices}, '
            f"or version={'/'.join(map(str, VERSION_CLASSES))}")
    version = version or versions.get(type_name) or 1
    resolve_arch(arch, version=version)  # a clear error for a bad preset
    allowed = set(inspect.signature(ConvNeXt.__init__).parameters) - {
        'self', 'arch', 'out_indices', 'pretrained'}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise SwapError(
            f'swap_backbone got unknown backbone argument(s) {unknown}; '
            f"ConvNeXt takes: {', '.join(sorted(allowed))} (out_indices "
            "is derived from the old backbone's outputs)")
    if pretrained is not None and kwargs.get('init_cfg') is not None:
        raise SwapError(
            f'swap_backbone got both pretrained={pretrained!r} and '
            f"init_cfg={kwargs['init_cfg']!r}; give only one")
    backbone: Dict[str, Any] = dict(type=VERSION_CLASSES[version],
                                    arch=arch,
                                    drop_path_rate=dense_drop_path(arch))
    if version == 1:
        backbone['layer_scale_init_value'] = 1.0
    elif kwargs.get('layer_scale_init_value') is not None:
        raise SwapError(
            f"layer_scale_init_value={kwargs['layer_scale_init_value']!r} "
            'with ConvNeXtV2, which has no layer scale; leave it out')
    backbone.update(kwargs)
    backbone['init_cfg'] = kwargs.get('init_cfg') if pretrained is None \
        else dict(type='Pretrained', checkpoint=pretrained)
    return backbone


def probe_backbone(cfg: Config) -> Tuple[List[int], List[int]]:
    """Channels and strides of the outputs of ``cfg.model.backbone``.

    The backbone is built in ``cfg.default_scope`` (after the config's
    ``custom_imports``) without weights, SyncBN as BN, and run once in eval
    mode on a zero image.

    Args:
        cfg (Config): A config with ``model.backbone``.

    Returns:
        tuple[list[int], list[int]]: Channels and strides, in output order.
    """
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, DefaultScope
    from mmengine.utils import import_modules_from_strings

    imports = cfg.get('custom_imports')
    if imports:
        import_modules_from_strings(**imports)
    backbone_cfg = copy.deepcopy(cfg.model.backbone)
    backbone_cfg.pop('init_cfg', None)
    backbone_cfg.pop('pretrained', None)
    scope = cfg.get('default_scope')
    errors = []
    with DefaultScope.overwrite_default_scope(scope):
        try:
            module = revert_sync_batchnorm(MODELS.build(backbone_cfg))
        except Exception as exc:
            raise SwapError(
                f'cannot build the old backbone model.backbone (type='
                f"{backbone_cfg.get('type')!r}) in scope {scope!r} to read "
                f'its outputs: {type(exc).__name__}: {exc}; check the '
                "config's default_scope and custom_imports") from exc
        module.eval()  # not chained: some train() overrides return None
        in_channels = backbone_cfg.get('in_channels', 3)
        for size in PROBE_SIZES:
            try:
                with torch.no_grad():
                    outs = module(torch.zeros(1, in_channels, size, size))
                break
            except Exception as exc:  # e.g. too small for the backbone
                errors.append(f'{size}px: {type(exc).__name__}: {exc}')
        else:
            raise SwapError(
                f"the old backbone {backbone_cfg.get('type')!r} failed a "
                f"forward on zero images ({'; '.join(errors)})")
    outs = (outs, ) if isinstance(outs, torch.Tensor) else tuple(outs)
    if not outs or not all(
            isinstance(o, torch.Tensor) and o.ndim == 4 for o in outs):
        raise SwapError(
            f"the old backbone {backbone_cfg.get('type')!r} returned "
            f'{[getattr(o, "shape", type(o).__name__) for o in outs]}, not '
            'NCHW feature maps; swap_backbone only replaces backbones of '
            'dense feature maps')
    channels = [int(o.shape[1]) for o in outs]
    strides = [round(size / o.shape[-1]) for o in outs]
    return channels, strides


def stages_for_strides(strides: Sequence[int]) -> Tuple[int, ...]:
    """The ConvNeXt stage (``out_indices``) of each old output.

    Stride ``4 * 2**i`` is stage ``i``. A stride repeating the previous
    one (a dilated stage) takes the next stage, changing its stride.

    Args:
        strides (Sequence[int]): Strides of the old outputs, in order.

    Returns:
        tuple[int, ...]: One stage per output, increasing.

    Example:
        >>> stages_for_strides([8, 16, 32])
        (1, 2, 3)
        >>> stages_for_strides([4, 8, 8, 8])  # mmseg's ResNetV1c-D8
        (0, 1, 2, 3)
    """
    natural = {s: i for i, s in enumerate(STRIDES)}
    stages: List[int] = []
    for k, stride in enumerate(strides):
        repeated = k > 0 and stride == strides[k - 1]
        stage = stages[-1] + 1 if repeated else natural.get(stride)
        if stage is None or stage >= NUM_STAGES or (stages
                                                    and stage <= stages[-1]):
            why = ('it maps to no ConvNeXt stage (strides '
                   f"{', '.join(map(str, STRIDES))})" if stride not in natural
                   else 'the outputs before it already use the stages up to '
                   f'{stages[-1] if stages else "-"}')
            raise SwapError(
                f'the old backbone outputs at strides {tuple(strides)}: '
                f'output {k} at stride {stride} cannot be fed by ConvNeXt: '
                f'{why}; give the old backbone out_indices whose strides '
                'are among 4, 8, 16, 32 in increasing order')
        stages.append(stage)
    return tuple(stages)


def rewrite_consumers(model: dict, old_channels: Sequence[int],
                      new_channels: Sequence[int],
                      old_strides: Sequence[int] = (),
                      new_strides: Sequence[int] = ()
                      ) -> Dict[str, Tuple[Any, Any]]:
    """Rewrite in place the channels of what consumes the backbone outputs.

    The consumers are those of
    :func:`~convnext_backbone.consumers.find_consumers`. See
    :func:`swap_backbone` for the rules; a ``strides`` list equal to the old
    strides follows the new ones.

    Args:
        model (dict): ``cfg.model``; modified in place.
        old_channels (Sequence[int]): Channels of the old outputs.
        new_channels (Sequence[int]): Channels of the new outputs (as many).
        old_strides (Sequence[int]): Strides of the old outputs. Defaults
            to ().
        new_strides (Sequence[int]): Strides of the new outputs. Defaults
            to ().

    Returns:
        dict: ``{key path: (old value, new value)}``, one entry per
        rewritten key, in config order.

    Raises:
        SwapError: A value that does not match the old outputs, naming the
            key path.
    """
    consumers = find_consumers(model)
    if not any('in_channels' in c.node for c in consumers):
        raise SwapError(
            'found nothing that consumes the backbone outputs: no model.neck '
            'with in_channels and no model.*head with in_channels; set the '
            'new channels yourself: convnext_backbone.presets.out_channels('
            'arch, out_indices)')
    rewritten = {}
    for path, node, _ in consumers:
        rewritten.update(_rewrite_consumer(path, node, list(old_channels),
                                           list(new_channels)))
        strides = node.get('strides')
        if (isinstance(strides, (list, tuple)) and list(strides) ==
                list(old_strides) and list(old_strides) != list(new_strides)):
            node['strides'] = list(new_strides)
            rewritten[f'{path}.strides'] = (list(old_strides),
                                            list(new_strides))
    return rewritten


def _nested_channels(node: Any, path: str) -> List[Tuple[str, Any]]:
    """``(key path, value)`` of every ``*channels`` key below ``node``."""
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(
        node) if isinstance(node, (list, tuple)) else ()
    for key, value in items:
        sub = f'{path}.{key}'
        if isinstance(key, str) and key.endswith('channels'):
            found.append((sub, value))
        else:
            found.extend(_nested_channels(value, sub))
    return found


def _rewrite_consumer(path: str, node: dict, old: List[int],
                      new: List[int]) -> Dict[str, Tuple[Any, Any]]:
    """Rewrite one consumer's channel keys in place (see swap_backbone);
    ``{key path: (old value, new value)}`` of each."""
    produced = f'the old backbone produced channels {old} (in_index 0..' \
        f'{len(old) - 1})'
    for key, value in node.items():
        ints = value if isinstance(value, (list, tuple)) else [value]
        if (key.endswith('in_channels') and key not in KNOWN_CHANNEL_KEYS
                and any(v in old for v in ints)):
            raise SwapError(
                f'{path}.{key}={value!r} holds a channel count of the old '
                f'backbone; swap_backbone does not know this key ({produced})'
                '; set it after the swap from convnext_backbone.presets.'
                'out_channels(arch, out_indices)')
    if not any(k.endswith('in_channels') for k in node):
        # A head fed by the backbone without saying its input channels
        # (mmdet's C4 roi_head: RoI extractor + ResLayer): fine unless a
        # channel count of the old backbone sits inside it.
        for key, value in _nested_channels(node, path):
            ints = value if isinstance(value, (list, tuple)) else [value]
            if any(v in old for v in ints):
                raise SwapError(
                    f'{key}={value!r}: {path} takes the backbone outputs '
                    'directly (no neck) and this channel count of the old '
                    f'backbone sits inside it ({produced}); swap_backbone '
                    'cannot tell which of its layers consume the backbone; '
                    'add a neck or set the channels after the swap from '
                    'convnext_backbone.presets.out_channels(arch, '
                    'out_indices)')
        return {}
    rewritten = {}
    if 'in_channels' in node:
        value = node['in_channels']
        node['in_channels'] = _map_channels(path, value, node.get('in_index'),
                                            old, new, produced)
        rewritten[f'{path}.in_channels'] = (value, node['in_channels'])
    if 'c1_in_channels' in node:
        value = node['c1_in_channels']
        if value != old[0]:
            raise SwapError(
                f'{path}.c1_in_channels={value!r} is the channels of output '
                f'0, but {produced}; fix the config first')
        node['c1_in_channels'] = new[0]
        rewritten[f'{path}.c1_in_channels'] = (value, new[0])
    return rewritten


def _map_channels(path: str, value: Any, in_index: Any, old: List[int],
                  new: List[int], produced: str) -> Union[int, List[int]]:
    """The new ``in_channels`` of one consumer (see swap_backbone)."""
    key = f'{path}.in_channels'
    if in_index is None:
        if isinstance(value, (list, tuple)) and list(value) == old:
            return list(new)
        if isinstance(value, int) and len(old) == 1 and value == old[0]:
            return new[0]
        hint = (' (a scalar needs in_index naming the output it reads)'
                if isinstance(value, int) and value in old else '')
        raise SwapError(
            f'{key}={value!r} does not match what the old backbone produced: '
            f'{produced}{hint}; fix in_channels / in_index first')
    indices = in_index if isinstance(in_index, (list, tuple)) else [in_index]
    values = value if isinstance(value, (list, tuple)) else [value]
    if isinstance(in_index, (list, tuple)) != isinstance(
            value, (list, tuple)) or len(indices) != len(values):
        raise SwapError(
            f'{key}={value!r} does not fit {path}.in_index={in_index!r}: '
            'give one channel count per index (both ints or equally long '
            'lists)')
    for index, channels in zip(indices, values):
        if not isinstance(index, int) or not -len(old) <= index < len(old):
            raise SwapError(
                f'{path}.in_index={in_index!r}: index {index!r} is no '
                f'output of the old backbone; {produced}')
        if channels != old[index]:
            raise SwapError(
                f'{key}={value!r}: {channels} at in_index {index} does not '
                f'match what the old backbone produced there ({old[index]}); '
                f'{produced}; fix in_channels / in_index first')
    mapped = [new[i] for i in indices]
    return mapped if isinstance(in_index, (list, tuple)) else mapped[0]


def _registered_name(cfg: Config, type_name: str) -> str:
    """``type_name`` as the config's scope must spell it to build this
    package's class: a scope with its own ConvNeXt (mmpretrain) would win
    over the root registry's, so there it is ``'mmengine.ConvNeXt'``."""
    from mmengine.registry import MODELS
    scope = cfg.get('default_scope')
    with MODELS.switch_scope_and_registry(scope) as registry:
        found = registry.get(type_name)
    ours = MODELS.get(type_name)  # the root registry holds this package's
    return type_name if found is ours else f'{MODELS.scope}.{type_name}'


def _imagenet_preprocessor(cfg: Config) -> None:
    """Set the data preprocessor to the ImageNet RGB mean / std; log each
    change at WARNING (it changes what the model sees)."""
    model = cfg.model
    where, node = 'model.data_preprocessor', model.get('data_preprocessor')
    if not isinstance(node, dict):  # mmpretrain: top-level, Runner merges
        where, node = 'data_preprocessor', cfg.get('data_preprocessor')
    if not isinstance(node, dict):
        print_log(
            'swap_backbone: the config has no data_preprocessor; the '
            f'pretrained ConvNeXt expects RGB input normalised with mean '
            f'{IMAGENET_MEAN} and std {IMAGENET_STD}',
            logger='current', level=logging.WARNING)
        return
    rgb = 'to_rgb' if ('to_rgb' in node or cfg.get('default_scope')
                       == 'mmpretrain') else 'bgr_to_rgb'
    wanted = {'mean': IMAGENET_MEAN, 'std': IMAGENET_STD, rgb: True}
    changes = []
    for key, value in wanted.items():
        before = node.get(key)
        same = (list(before) == value if isinstance(before, (list, tuple))
                else before == value)
        if not same:
            node[key] = value
            changes.append(f'{where}.{key}: {before!r} -> {value!r} '
                           '(ImageNet RGB, as the checkpoint expects)')
    if changes:
        print_log(
            'swap_backbone changed the input normalisation for the '
            'pretrained ConvNeXt:\n  ' + '\n  '.join(changes),
            logger='current', level=logging.WARNING)


def _layer_decay(cfg: Config, decay_rate: float) -> List[str]:
    """Put the layer-wise LR decay constructor into ``optim_wrapper``."""
    wrapper = cfg.get('optim_wrapper')
    if not isinstance(wrapper, dict):
        return ['no optim_wrapper in the config: layer-wise lr decay not set']
    optimizer = wrapper.get('optimizer')
    if not isinstance(optimizer, dict) or 'lr' not in optimizer:
        raise SwapError(
            f'optim_wrapper.optimizer={optimizer!r} sets no lr, which the '
            'layer-wise lr decay scales; set one, or pass decay_rate=None '
            'to leave the optimizer as it is')
    changes = []
    if 'weight_decay' not in optimizer:
        default = _default_weight_decay(optimizer.get('type'))
        optimizer['weight_decay'] = default
        changes.append(
            f'optim_wrapper.optimizer.weight_decay={default} set (the '
            f"{optimizer.get('type')} default; the constructor needs it)")
    paramwise = dict(wrapper.get('paramwise_cfg') or {})
    dropped = {k: v for k, v in paramwise.items()
               if k not in PARAMWISE_KEYS or k == 'num_layers'}
    if dropped:
        print_log(
            f'swap_backbone: optim_wrapper.paramwise_cfg keys {dropped} are '
            'not ConvNeXtLayerDecayOptimizerConstructor\'s (it takes '
            f"{', '.join(PARAMWISE_KEYS)}; num_layers is inferred from "
            'the new backbone): dropped', logger='current',
            level=logging.WARNING)
    before = (wrapper.get('constructor'), paramwise)
    wrapper['constructor'] = 'ConvNeXtLayerDecayOptimizerConstructor'
    wrapper['paramwise_cfg'] = dict(decay_rate=decay_rate,
                                    decay_type='layer_wise')
    changes.append(
        f'optim_wrapper: constructor={before[0]!r}, paramwise_cfg='
        f'{before[1]} -> {wrapper["constructor"]!r}, '
        f'{wrapper["paramwise_cfg"]}')
    return changes


def _convnext_optimizer(cfg: Config) -> List[str]:
    """``recipe='convnext'``: the paper's AdamW in ``optim_wrapper``."""
    wrapper = cfg.get('optim_wrapper')
    if not isinstance(wrapper, dict):
        raise SwapError(
            "recipe='convnext' needs the config's optim_wrapper to replace "
            'its optimizer, and the config has none')
    before = wrapper.get('optimizer')
    wrapper['optimizer'] = dict(CONVNEXT_OPTIMIZER)
    changes = [f'optim_wrapper.optimizer: {_describe(before)} -> '
               f"{_describe(wrapper['optimizer'])} (recipe='convnext': the "
               f'paper\'s, for a total batch of {CONVNEXT_BASE_BATCH})']
    scale = cfg.get('auto_scale_lr')
    if isinstance(scale, dict) and \
            scale.get('base_batch_size') != CONVNEXT_BASE_BATCH:
        changes.append(f"auto_scale_lr.base_batch_size: "
                       f"{scale.get('base_batch_size')} -> "
                       f'{CONVNEXT_BASE_BATCH}')
        scale['base_batch_size'] = CONVNEXT_BASE_BATCH
    return changes


def _warn_kept_optimizer(cfg: Config) -> None:
    """Name the base config's optimizer, which ConvNeXt now trains with,
    and how to get the paper's instead (a WARNING unless it is AdamW)."""
    wrapper = cfg.get('optim_wrapper')
    optimizer = wrapper.get('optimizer') if isinstance(wrapper, dict) \
        else None
    if not isinstance(optimizer, dict):
        return
    adamw = str(optimizer.get('type')).split('.')[-1] == 'AdamW'
    print_log(
        f'swap_backbone: the base config\'s optimizer is kept: '
        f'{_describe(optimizer)}'
        + ('' if adamw else
           '; the paper trains ConvNeXt with AdamW (lr 1e-4 for a batch of '
           '16, weight_decay 0.05) and layer-wise lr decay: pass '
           "recipe='convnext' to swap_backbone, or set "
           'optim_wrapper.optimizer yourself'),
        logger='current', level=logging.INFO if adamw else logging.WARNING)


def _describe(optimizer: Any) -> str:
    """``SGD (lr=0.01, momentum=0.9, weight_decay=0.0001)``."""
    if not isinstance(optimizer, dict):
        return repr(optimizer)
    args = ', '.join(f'{k}={v}' for k, v in optimizer.items() if k != 'type')
    return f"{optimizer.get('type')} ({args})"


def _default_weight_decay(optimizer_type: Any) -> float:
    """The ``weight_decay`` default of a torch optimizer class."""
    cls = getattr(torch.optim, str(optimizer_type), None)
    param = inspect.signature(cls).parameters.get(
        'weight_decay') if cls is not None else None
    if param is None or not isinstance(param.default, (int, float)):
        raise SwapError(
            f'optim_wrapper.optimizer (type={optimizer_type!r}) sets no '
            'weight_decay and its default is unknown; the layer-wise lr '
            'decay needs one: set weight_decay, or pass decay_rate=None')
    return float(param.default)


def _custom_imports(cfg: Config) -> List[str]:
    """Add ``'convnext_backbone'`` to ``custom_imports``."""
    imports = cfg.get('custom_imports') or dict(allow_failed_imports=False)
    modules = imports.get('imports', [])
    modules = [modules] if isinstance(modules, str) else list(modules)
    if 'convnext_backbone' in modules:
        return []
    imports['imports'] = modules + ['convnext_backbone']
    cfg['custom_imports'] = imports
    return [f"custom_imports.imports: {modules} -> {imports['imports']}"]
