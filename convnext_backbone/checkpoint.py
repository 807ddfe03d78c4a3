"""Loading ConvNeXt V1 and V2 checkpoints in the layouts people actually
have.

:func:`convert_to_convnext` is the one pure function that maps any supported
layout onto this package's parameter names; the backbones'
``init_cfg=dict(type='Pretrained')`` and ``tools/convert_checkpoint.py`` both
use it. Supported layouts, V1 and V2 alike:

- official ImageNet files ``{'model': sd}`` (``dwconv``/``pwconv``, ``norm``,
  ``head``; V2: ``grn.gamma``/``grn.beta`` of shape (1, 1, 1, C)), EMA files
  ``{'model_ema': sd}``;
- official ConvNeXt V2 FCMAE pre-training files: the encoder under
  ``encoder.`` with the sparse (MinkowskiEngine) names of
  ``models/convnextv2_sparse.py`` (``kernel`` of shape (k*k, in, out) or
  (k*k, C), ``.ln.``/``.linear.`` sub-modules, (1, C) biases and GRN), or the
  same encoder under dense names; decoder, ``mask_token``, ``proj`` and
  ``pred`` are dropped;
- mmpretrain ``{'state_dict': {'backbone.…depthwise_conv…',
  'head.fc…'}}`` (V2: ``grn.gamma``/``grn.beta`` of shape (C,));
- timm (``stem.*``, ``stages.i.downsample.*``, ``stages.s.blocks.b.conv_dw``,
  ``mlp.fc1``, ``head.norm``, ``head.fc``; V2 ``mlp.grn.weight``/``bias``;
  the 1x1-conv ``mlp.fc1/fc2`` of timm's atto..nano);
- full detector / segmentor checkpoints (backbone under ``backbone.``, with
  the dense output norms ``norm0..norm3``), from this package, mmdet or the
  official dense repos.

The official names are those of facebookresearch/ConvNeXt
(``models/convnext.py``) and facebookresearch/ConvNeXt-V2
(``models/convnextv2.py``; its ``utils.remap_checkpoint_keys`` is how
fine-tuning reads FCMAE files); timm's are those of
``timm/models/convnext.py`` (its ``checkpoint_filter_fn`` maps the other
way); mmpretrain's are those of ``mmpretrain/models/backbones/convnext.py``
and ``mmpretrain/models/utils/norm.py`` (``GRN``).
"""
import logging
import math
import os.path as osp
import re
from collections import OrderedDict
from typing import (Dict, List, Mapping, MutableMapping, Optional, Protocol,
                    Sequence, Tuple, Union)

import torch

from .presets import VERSION_CLASSES

# A converted key must look like one of these to count as ConvNeXt.
_CONVNEXT_KEY = re.compile(
    r'^(downsample_layers\.\d+\.[01]\.(weight|bias)'
    r'|stages\.\d+\.\d+\.(dwconv|norm|pwconv1|pwconv2)\.(weight|bias)'
    r'|stages\.\d+\.\d+\.gamma'
    r'|stages\.\d+\.\d+\.grn\.(gamma|beta)'
    r'|norm\d\.(weight|bias))$')
_V1_KEY = re.compile(r'^stages\.\d+\.\d+\.gamma$')  # layer scale
_V2_KEY = re.compile(r'^stages\.\d+\.\d+\.grn\.')

# (pattern, replacement) applied in order to timm names.
_TIMM_RULES = (
    (r'^stem\.([01])\.', r'downsample_layers.0.\1.'),
    (r'^stages\.(\d+)\.downsample\.([01])\.', r'downsample_layers.\1.\2.'),
    (r'^stages\.(\d+)\.blocks\.(\d+)\.conv_dw\.', r'stages.\1.\2.dwconv.'),
    (r'^stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\.', r'stages.\1.\2.pwconv1.'),
    (r'^stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\.', r'stages.\1.\2.pwconv2.'),
    (r'^stages\.(\d+)\.blocks\.(\d+)\.mlp\.grn\.weight$',
     r'stages.\1.\2.grn.gamma'),
    (r'^stages\.(\d+)\.blocks\.(\d+)\.mlp\.grn\.bias$',
     r'stages.\1.\2.grn.beta'),
    (r'^stages\.(\d+)\.blocks\.(\d+)\.', r'stages.\1.\2.'),
)
# mmpretrain block names -> official names.
_MMPRETRAIN_RULES = (
    (r'\.depthwise_conv\.', '.dwconv.'),
    (r'\.pointwise_conv1\.', '.pwconv1.'),
    (r'\.pointwise_conv2\.', '.pwconv2.'),
)
# Sparse FCMAE encoder: MinkowskiLayerNorm keeps its LayerNorm as ``ln``,
# MinkowskiLinear its Linear as ``linear`` (official models/utils.py).
_FCMAE_RULES = ((r'\.(ln|linear)\.', '.'), )
# Key patterns that tell a layout apart (names relative to the backbone).
_LAYOUT_SIGNS = (
    ('timm', re.compile(r'^(stem\.|stages\.\d+\.(blocks|downsample)\.)')),
    ('mmpretrain', re.compile(r'\.(depthwise_conv|pointwise_conv[12])\.')),
    ('fcmae', re.compile(r'(\.kernel$|\.(ln|linear)\.)')),
)
#: What :func:`detect_layout` answers, with the names that tell it.
LAYOUTS = {
    'convnext_backbone': 'this package\'s and the official repositories\' '
                         'names (dwconv, pwconv1/2, gamma, grn)',
    'mmpretrain': 'mmpretrain / mmdet / mmseg zoo (depthwise_conv, '
                  'pointwise_conv1/2)',
    'timm': 'timm (stem, stages.i.blocks, conv_dw, mlp.fc1/fc2)',
    'fcmae': 'ConvNeXt V2 FCMAE sparse encoder (kernel, ln, linear)',
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into a ConvNeXt backbone."""


def unwrap_state_dict(checkpoint: Mapping) -> Dict[str, torch.Tensor]:
    """Return the tensor dict of a checkpoint file's content.

    Args:
        checkpoint (Mapping): What ``torch.load`` returned: a state dict, or
            a dict holding it under ``state_dict``, ``model`` or
            ``model_ema``.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(
            f'expected a dict of tensors, got {type(checkpoint).__name__}')
    for key in ('state_dict', 'model', 'model_ema'):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            checkpoint = checkpoint[key]
            break
    tensors = {k: v for k, v in checkpoint.items()
               if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(
            'no tensors found (top-level keys: '
            f'{sorted(map(str, checkpoint))[:8]}); expected a state dict or '
            "{'state_dict': ...} / {'model': ...}")
    return tensors


def convert_to_convnext(state_dict: Mapping[str, torch.Tensor],
                        prefix: Optional[str] = None
                        ) -> Dict[str, torch.Tensor]:
    """Map a ConvNeXt V1 or V2 state dict of any supported layout to our
    names and shapes.

    Pure: no I/O, the input is not modified. Classification parts (the final
    ``norm``/``head.norm``/mmpretrain's classifier ``norm3`` and every
    ``head``) are dropped, as the official dense runs do; the dense output
    norms ``norm0..3`` of detector/segmentor checkpoints are kept. Keys that
    do not belong to a ConvNeXt trunk (an FCMAE decoder, ``mask_token``,
    ``proj``, ``pred``, a detector's neck and heads) are dropped. GRN
    parameters become (C,), sparse ``kernel`` tensors and 1x1-conv MLP
    weights the shapes of our ``Conv2d`` / ``Linear`` weights.

    Args:
        state_dict (Mapping[str, Tensor]): The tensors (already unwrapped,
            see :func:`unwrap_state_dict`).
        prefix (str, optional): Keep only keys under this prefix and strip
            it (e.g. ``'backbone.'``). Defaults to None: strip ``module.``
            (DDP) and, if present, take the ``backbone.`` (dense and
            mmpretrain files) or ``encoder.`` (FCMAE files) sub-dict.

    Returns:
        dict[str, Tensor]: Keys as in :class:`~convnext_backbone.ConvNeXt` /
        :class:`~convnext_backbone.ConvNeXtV2`.
    """
    return _convert(state_dict, prefix)[0]


def _convert(state_dict: Mapping[str, torch.Tensor],
             prefix: Optional[str]) -> Tuple[Dict[str, torch.Tensor], list]:
    """:func:`convert_to_convnext`, and the file's keys it dropped (relative
    to the prefix where they are under it)."""
    sd = OrderedDict(
        (k[len('module.'):] if k.startswith('module.') else k, v)
        for k, v in state_dict.items())
    # mmpretrain classifiers keep the pooled-feature norm as backbone.norm3
    # next to head.fc; that norm is the classification one, not a dense one.
    dense_parts = ('neck.', 'decode_head.', 'roi_head.', 'rpn_head.',
                   'auxiliary_head.', 'bbox_head.', 'mask_head.')
    is_classifier = (any(k.startswith('head.') for k in sd)
                     and not any(k.startswith(dense_parts) for k in sd))
    if prefix is None:
        prefix = next((p for p in ('backbone.', 'encoder.')
                       if any(k.startswith(p) for k in sd)), None)
    dropped = []
    if prefix:
        dropped = [k for k in sd if not k.startswith(prefix)]
        sd = OrderedDict((k[len(prefix):], v) for k, v in sd.items()
                         if k.startswith(prefix))
    rules = _rules(detect_layout(sd))
    out = OrderedDict()
    for name, value in sd.items():
        key, value = _rename(name, value, rules)
        if (key.startswith(('head.', 'norm.')) or key == 'norm'
                or (is_classifier and re.match(r'^norm\d\.', key))
                or not _CONVNEXT_KEY.match(key)):
            dropped.append(name)  # classification head / norm, or foreign
            continue
        out[key] = value
    return out, dropped


def detect_layout(keys) -> str:
    """The layout of a ConvNeXt state dict's names (relative to the
    backbone): a key of :data:`LAYOUTS`.

    Args:
        keys (Iterable[str]): The names, e.g. ``'stages.0.0.dwconv.weight'``.
    """
    keys = list(keys)
    for layout, sign in _LAYOUT_SIGNS:
        if any(sign.search(k) for k in keys):
            return layout
    return 'convnext_backbone'


def _rules(layout: str) -> tuple:
    """The renaming rules of a layout."""
    if layout == 'timm':
        return _TIMM_RULES
    return _MMPRETRAIN_RULES + _FCMAE_RULES


def _rename(name: str, value: torch.Tensor,
            rules: tuple) -> Tuple[str, torch.Tensor]:
    """One tensor under our name and in our shape."""
    key = name
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    if key.endswith('.kernel'):
        key, value = key[:-len('kernel')] + 'weight', _dense_kernel(value)
    if _CONVNEXT_KEY.match(key):
        value = _dense_shape(key, value)
    return key, value


def rename_backbone_keys(state_dict: Mapping[str, torch.Tensor],
                         prefix: str = 'backbone.'
                         ) -> Tuple[Dict[str, torch.Tensor], str, int]:
    """A whole model's state dict with the backbone's keys (under
    ``prefix``) renamed and reshaped from any layout to this package's.

    Pure: the input is not modified; keys outside the prefix and keys that
    are not ConvNeXt's keep their names and tensors.

    Args:
        state_dict (Mapping[str, Tensor]): A detector / segmentor /
            classifier state dict (or a backbone's, with ``prefix=''``).
        prefix (str): Where the backbone's keys are. Defaults to
            'backbone.'.

    Returns:
        tuple[dict, str, int]: The new state dict (same key order), the
        layout found under the prefix (:data:`LAYOUTS`) and how many tensors
        were renamed or reshaped.
    """
    layout = detect_layout(k[len(prefix):] for k in state_dict
                           if k.startswith(prefix))
    rules = _rules(layout)
    out = OrderedDict()
    changed = 0
    for name, value in state_dict.items():
        if not name.startswith(prefix):
            out[name] = value
            continue
        key, new = _rename(name[len(prefix):], value, rules)
        changed += key != name[len(prefix):] or new is not value
        out[prefix + key] = new
    return out, layout, changed


def adapt_backbone_keys(state_dict: MutableMapping[str, torch.Tensor],
                        prefix: str, own_keys: Sequence[str], version: int,
                        owner: str) -> Tuple[str, int]:
    """Rename, in place, the keys of ``state_dict`` under ``prefix`` from
    any layout to this package's, and check that they fill the backbone.

    What a ConvNeXt backbone does when a whole model's state dict is loaded
    into a model holding it (``load_from``, ``resume``, ``init_detector``,
    ``load_state_dict``): the loader need not know the layout. Keys that are
    not ConvNeXt's keep their names, so a strict load still reports them.

    Args:
        state_dict (MutableMapping): The state dict being loaded; changed in
            place.
        prefix (str): Where the backbone sits, e.g. ``'backbone.'``.
        own_keys (Sequence[str]): The backbone's state-dict keys, relative.
        version (int): The backbone's ConvNeXt version (1 or 2).
        owner (str): The backbone's description, for the messages.

    Returns:
        tuple[str, int]: The layout found (:data:`LAYOUTS`) and how many
        keys were renamed or reshaped.

    Raises:
        CheckpointError: The keys under the prefix are of the other ConvNeXt
            version, or fill only part of the trunk (some of it would stay
            random); the first missing key is named.
    """
    names = [k for k in state_dict if k.startswith(prefix)]
    if not names:
        return 'convnext_backbone', 0
    renamed, layout, changed = rename_backbone_keys(
        {k: state_dict.pop(k) for k in names}, prefix)
    state_dict.update(renamed)
    relative = [k[len(prefix):] for k in renamed]
    found = checkpoint_version(relative)
    where = f" under '{prefix}'" if prefix else ''
    if found is not None and found != version:
        what = {1: 'layer-scale gamma, no GRN', 2: 'GRN, no layer-scale gamma'}
        raise CheckpointError(
            f'the weights{where} are ConvNeXt V{found} ({what[found]}); '
            f'they cannot be loaded into {owner}, a ConvNeXt V{version} '
            f"backbone: use type='{VERSION_CLASSES[found]}' for this "
            'checkpoint, or a checkpoint of this model')
    trunk = [k for k in own_keys if not re.match(r'^norm\d\.', k)]
    missing = [k for k in trunk if prefix + k not in state_dict]
    if len(missing) < len(trunk) and missing:
        raise CheckpointError(
            f'the checkpoint{where} fills only {len(trunk) - len(missing)} '
            f'of the {len(trunk)} trunk tensors of {owner} ({layout} layout); '
            f"'{prefix}{missing[0]}' and {len(missing) - 1} more would stay "
            'random. Use the config (arch, out_indices, V1/V2) the '
            'checkpoint was trained with')
    return layout, changed


def _dense_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """A MinkowskiEngine ``kernel`` as a Conv2d weight, as the official
    ``utils.remap_checkpoint_keys`` turns it: (k*k, in, out) of a
    convolution -> (out, in, k, k); (k*k, C) of a depthwise one ->
    (C, 1, k, k)."""
    size = math.isqrt(kernel.shape[0])
    if kernel.ndim == 3:
        _, in_dim, out_dim = kernel.shape
        return kernel.permute(2, 1, 0).reshape(out_dim, in_dim, size,
                                               size).transpose(3, 2)
    return kernel.permute(1, 0).reshape(kernel.shape[1], 1, size,
                                        size).transpose(3, 2)


def _dense_shape(key: str, value: torch.Tensor) -> torch.Tensor:
    """Our shape of a converted tensor: GRN parameters and biases 1-D
    (official GRN (1, 1, 1, C), sparse GRN and biases (1, C)); the 1x1-conv
    ``pwconv`` weights of timm's small models (out, in, 1, 1) -> (out, in)."""
    if (key.endswith('.bias') or '.grn.' in key) and value.ndim != 1:
        return value.reshape(-1)
    if re.search(r'\.pwconv[12]\.weight$', key) and value.ndim == 4:
        return value.flatten(1)
    return value


def checkpoint_version(converted) -> Optional[int]:
    """The ConvNeXt version a converted state dict is of: 2 if its blocks
    have GRN, 1 if they have a layer-scale ``gamma``, None if neither (e.g.
    only the stem, or V1 trained without layer scale)."""
    if any(_V2_KEY.match(k) for k in converted):
        return 2
    if any(_V1_KEY.match(k) for k in converted):
        return 1
    return None


def load_checkpoint_file(filename: str,
                         map_location: str = 'cpu') -> Dict[str, torch.Tensor]:
    """Read a checkpoint safely (``weights_only=True``) and unwrap it.

    Args:
        filename (str): Local path, ``http(s)://`` URL or any scheme
            mmengine's ``CheckpointLoader`` knows.
        map_location (str): Device to map tensors to. Defaults to 'cpu'.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    is_url = '://' in filename
    if not is_url and not osp.isfile(filename):
        raise FileNotFoundError(
            f"ConvNeXt checkpoint '{filename}' does not exist; pass an "
            'existing file or an http(s) URL in init_cfg=dict('
            "type='Pretrained', checkpoint=...), or set init_cfg=None to "
            'train from scratch')
    try:
        content = CheckpointLoader.load_checkpoint(
            filename, map_location=map_location)
    except Exception as exc:  # torch raises many types for bad files
        raise CheckpointError(
            f"cannot read checkpoint '{filename}': {type(exc).__name__}: "
            f'{str(exc).splitlines()[0] if str(exc) else exc!r}. It must be '
            'a file written by torch.save holding only tensors/plain types '
            '(it is loaded with weights_only=True)') from exc
    try:
        return unwrap_state_dict(content)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint '{filename}': {exc}") from None


class ConvNeXtLike(Protocol):
    """What :func:`load_convnext_checkpoint` needs of a backbone: its
    settings (for the error messages) and its state dict."""

    arch: Union[str, dict]
    depths: Sequence[int]
    dims: Sequence[int]
    version: int

    def state_dict(self) -> Dict[str, torch.Tensor]:
        ...

    def load_state_dict(self, state_dict: Mapping[str, torch.Tensor],
                        strict: bool = True):
        ...


def load_convnext_checkpoint(
        model: ConvNeXtLike,
        filename: str,
        prefix: Optional[str] = None,
        map_location: str = 'cpu',
        logger: Optional[logging.Logger] = None
) -> Tuple[list, list, list]:
    """Load a checkpoint of any supported layout into a ConvNeXt (V1 or V2)
    backbone; log one summary line.

    Args:
        model (ConvNeXtLike): The backbone.
        filename (str): Path or URL of the checkpoint.
        prefix (str, optional): See :func:`convert_to_convnext`.
        map_location (str): Device the file's tensors are loaded to before
            they are copied into the model. Defaults to 'cpu'.
        logger (logging.Logger, optional): Where the one-line summary goes.

    Returns:
        tuple[list, list, list]: loaded, missing and unexpected keys.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: unreadable, not ConvNeXt, of the other ConvNeXt
            version (a V1 file into a ConvNeXtV2 or the reverse), too few
            keys matched, or shapes differ (e.g. a ConvNeXt-T file into a
            ConvNeXt-B).
    """
    raw = load_checkpoint_file(filename, map_location=map_location)
    converted, dropped = _convert(raw, prefix)
    own = model.state_dict()
    name = type(model).__name__
    if not converted:
        sample = ', '.join(list(raw)[:5])
        raise CheckpointError(
            f"checkpoint '{filename}' holds no ConvNeXt weights (first keys: "
            f'{sample}); expected an official, mmpretrain, timm or '
            'detector/segmentor ConvNeXt checkpoint')
    version = checkpoint_version(converted)
    if version is not None and version != model.version:
        what = {1: 'layer-scale gamma, no GRN', 2: 'GRN, no layer-scale gamma'}
        raise CheckpointError(
            f"checkpoint '{filename}' is a ConvNeXt V{version} checkpoint "
            f'({what[version]}); it cannot be loaded into {name}(arch='
            f'{model.arch!r}), a ConvNeXt V{model.version} backbone: use '
            f"type='{VERSION_CLASSES[version]}' for this checkpoint, or a "
            f'ConvNeXt V{model.version} checkpoint')
    mismatched = [(k, tuple(v.shape), tuple(own[k].shape))
                  for k, v in converted.items()
                  if k in own and v.shape != own[k].shape]
    if mismatched:
        lines = '; '.join(f'{k}: checkpoint {a} vs model {b}'
                          for k, a, b in mismatched[:4])
        raise CheckpointError(
            f"checkpoint '{filename}' does not fit this {name} "
            f'(arch={model.arch!r}, depths={model.depths}, dims={model.dims}):'
            f' {len(mismatched)} shape(s) differ, e.g. {lines}. Pick the '
            'arch the checkpoint was trained with')
    loaded = [k for k in converted if k in own]
    unexpected = [k for k in converted if k not in own]
    missing = [k for k in own if k not in converted]
    # The output norms are new for dense tasks; every other tensor of the
    # trunk is expected from an ImageNet file (a tensor left out would stay
    # random).
    trunk = [k for k in own if not re.match(r'^norm\d\.', k)]
    trunk_loaded = sum(k in converted for k in trunk)
    if trunk_loaded < len(trunk):
        raise CheckpointError(
            f"checkpoint '{filename}' matches only {trunk_loaded} of "
            f'{len(trunk)} trunk tensors of {name}(arch={model.arch!r}) '
            f'(e.g. missing {missing[:3]}); is it a checkpoint of this '
            'arch?')
    model.load_state_dict(converted, strict=False)
    if logger is not None:
        logger.info(
            f'{name}: loaded {len(loaded)} tensors from {filename}; '
            f'missing {len(missing)} ({_summarise(missing)}), unexpected '
            f'{len(unexpected)} ({_summarise(unexpected)}), dropped '
            f'{len(dropped)} ({_summarise(dropped)})')
    return loaded, missing, unexpected


def _summarise(keys: list) -> str:
    """Group keys by their first two name parts for a one-line log."""
    if not keys:
        return 'none'
    groups = []
    for k in keys:
        parts = k.split('.')
        groups.append('.'.join(parts[:2]) if parts[0] == 'stages'
                      else parts[0])
    return ', '.join(dict.fromkeys(groups))  # first-seen order, no repeats
