"""The arguments of mmpretrain's ConvNeXt that this backbone understands.

mmdet 3.x and mmseg 1.x ship their ConvNeXt configs on
``type='mmpretrain.ConvNeXt'`` (``mmpretrain/models/backbones/convnext.py``).
A user who changes only that type to ``'ConvNeXt'`` keeps every other key, so
:class:`~convnext_backbone.ConvNeXt` takes all 14 arguments of mmpretrain's
``ConvNeXt.__init__``: each one either means what it means there, or is
refused with an error that says why and what to write. Nothing here builds a
module; :data:`MMPRETRAIN_ARGUMENTS` is the table the docs list
(docs/coming_from_mmpretrain.md) and the tests hold against mmpretrain's own
signature.
"""
from typing import Any, Dict, Optional

#: Each argument of ``mmpretrain.models.ConvNeXt.__init__`` and what this
#: backbone does with it.
MMPRETRAIN_ARGUMENTS: Dict[str, str] = {
    'arch': 'accepted: the same preset names (also T/S/B/L/XL); a dict '
            'with depths and channels (or dims)',
    'in_channels': 'accepted, same meaning',
    'stem_patch_size': 'accepted if 4 (the paper\'s stride-4 stem); other '
                       'values change the strides every dense head expects: '
                       'refused',
    'norm_cfg': "accepted if dict(type='LN2d', eps=1e-6) (mmpretrain's "
                'default); other norms change the model: refused',
    'act_cfg': "accepted if dict(type='GELU') (the default); other "
               'activations change the model: refused',
    'linear_pw_conv': 'accepted: True, or False (1x1 convolutions: the same '
                      'function, only a weight layout; 4-D pointwise '
                      'weights of a checkpoint are converted on load)',
    'use_grn': 'accepted with layer_scale_init_value=0.: ConvNeXt V2 blocks '
               '(GRN, no layer scale) for any preset, as mmpretrain builds '
               'them; with a layer scale > 0 (GRN and gamma together, neither '
               'V1 nor V2): refused',
    'drop_path_rate': 'accepted, same meaning (linear over all blocks)',
    'layer_scale_init_value': 'accepted, same meaning (0 or less: no layer '
                              'scale); default 1e-6 as in mmpretrain',
    'out_indices': 'accepted, same meaning (int or sequence, negative from '
                   'the end); default (0, 1, 2, 3) here, -1 in mmpretrain',
    'frozen_stages': 'accepted, same meaning: 0 freezes nothing, k the first '
                     'k stages with their downsampling layers, 4 all; -1 '
                     'also freezes nothing',
    'gap_before_final_norm': 'accepted if False (dense feature maps); True '
                             'pools every output to a vector for '
                             'classification: refused',
    'with_cp': 'accepted, same meaning',
    'init_cfg': "accepted: dict(type='Pretrained', checkpoint=..., "
                'prefix=...) loads any layout (mmpretrain, official, timm, '
                "dense); mmpretrain's default TruncNormal/Constant list is "
                'the same init as None',
}

#: mmpretrain's defaults of the arguments checked below.
DEFAULT_NORM_CFG = dict(type='LN2d', eps=1e-6)
DEFAULT_ACT_CFG = dict(type='GELU')


def check_mmpretrain_args(name: str, *, stem_patch_size: int,
                          norm_cfg: Optional[dict], act_cfg: Optional[dict],
                          linear_pw_conv: bool,
                          gap_before_final_norm: bool) -> None:
    """Refuse the values of mmpretrain's arguments that would build another
    model than this backbone builds.

    Args:
        name (str): The backbone class, for the messages.
        stem_patch_size (int): Must be 4.
        norm_cfg (dict, optional): None or mmpretrain's default
            ``dict(type='LN2d', eps=1e-6)``.
        act_cfg (dict, optional): None or ``dict(type='GELU')`` (also with
            ``approximate='none'``).
        linear_pw_conv (bool): Either value (a weight layout only).
        gap_before_final_norm (bool): Must be False.

    Raises:
        ValueError: A value this backbone cannot build; the message names
            it and what to write instead.
    """
    if stem_patch_size != 4:
        raise ValueError(
            f'{name}: stem_patch_size={stem_patch_size!r} changes the '
            'architecture (the stem of ConvNeXt is a 4x4 patch conv, so the '
            'outputs have strides 4, 8, 16, 32 that the dense heads are '
            'configured for); remove stem_patch_size or set it to 4')
    if norm_cfg is not None and _normalised(norm_cfg) != DEFAULT_NORM_CFG:
        raise ValueError(
            f'{name}: norm_cfg={norm_cfg!r} would build another model; this '
            "backbone's norms are LayerNorm with eps=1e-6 (mmpretrain's "
            "default dict(type='LN2d', eps=1e-6)); remove norm_cfg")
    if act_cfg is not None and _normalised(act_cfg) != DEFAULT_ACT_CFG:
        raise ValueError(
            f'{name}: act_cfg={act_cfg!r} would build another model; this '
            "backbone's activation is exact GELU (dict(type='GELU')); "
            'remove act_cfg')
    if not isinstance(linear_pw_conv, bool):
        raise ValueError(f'{name}: linear_pw_conv={linear_pw_conv!r} must be '
                         'True or False')
    if gap_before_final_norm:
        raise ValueError(
            f'{name}: gap_before_final_norm={gap_before_final_norm!r} pools '
            "every stage's output to a vector (mmpretrain's classification "
            'default); dense heads need the feature maps: set '
            'gap_before_final_norm=False or remove it')


def _normalised(cfg: Any) -> Any:
    """A norm / act config with the spellings that mean the default
    written the default's way (``approximate='none'`` of GELU, an int
    ``eps``)."""
    if not isinstance(cfg, dict):
        return cfg
    cfg = dict(cfg)
    if cfg.get('type') == 'GELU' and cfg.get('approximate') == 'none':
        cfg.pop('approximate')
    if isinstance(cfg.get('eps'), (int, float)):
        cfg['eps'] = float(cfg['eps'])
    return cfg
