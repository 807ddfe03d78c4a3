"""The one table of ConvNeXt variants, V1 and V2.

The backbones, the configs and the docs all read :data:`ARCH_SETTINGS`; a
config names a preset (``arch='tiny'``) instead of retyping depths and dims.
V1 (``ConvNeXt``): T/S/B/L/XL are the variants of Liu et al., CVPR 2022
(Table 1 and appendix); atto/femto/pico/nano are the small variants people
use for edge work (timm naming). V2 (``ConvNeXtV2``, Woo et al., CVPR 2023,
Appendix A.1 and facebookresearch/ConvNeXt-V2 ``models/convnextv2.py``):
atto..nano, tiny, base, large and huge; V2 defines no small or xlarge, V1 no
huge (:data:`VERSION_PRESETS`). A preset name means the same depths and
dims in both versions. Beside the table: the class of each version
(:data:`VERSION_CLASSES`) and each preset's drop-path rate for dense
prediction (:data:`DENSE_DROP_PATH`).
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

ARCH_SETTINGS: Dict[str, Dict[str, Tuple[int, ...]]] = {
    'atto': dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320)),
    'femto': dict(depths=(2, 2, 6, 2), dims=(48, 96, 192, 384)),
    'pico': dict(depths=(2, 2, 6, 2), dims=(64, 128, 256, 512)),
    'nano': dict(depths=(2, 2, 8, 2), dims=(80, 160, 320, 640)),
    'tiny': dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),
    'small': dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768)),
    'base': dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024)),
    'large': dict(depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536)),
    'xlarge': dict(depths=(3, 3, 27, 3), dims=(256, 512, 1024, 2048)),
    'huge': dict(depths=(3, 3, 27, 3), dims=(352, 704, 1408, 2816)),
}

# The presets each ConvNeXt version defines, by version number.
VERSION_PRESETS: Dict[int, Tuple[str, ...]] = {
    1: ('atto', 'femto', 'pico', 'nano', 'tiny', 'small', 'base', 'large',
        'xlarge'),
    2: ('atto', 'femto', 'pico', 'nano', 'tiny', 'base', 'large', 'huge'),
}
# The class that builds each version, as configs name it (presets.py
# imports no model code).
VERSION_CLASSES: Dict[int, str] = {1: 'ConvNeXt', 2: 'ConvNeXtV2'}

# Dense drop-path defaults per preset (what swap_backbone gives): T/S/B/L/XL
# are the paper's Cascade Mask R-CNN COCO values (Liu et al., CVPR 2022,
# Appendix A.3; the COCO runs use the largest rates of its dense
# experiments), huge the V2 dense configs' (configs/convnextv2/, ours); the
# small presets (atto..nano) the 0.1 of mmdet's DINO ConvNeXt V2-atto port
# and of configs/toy/.
DENSE_DROP_PATH: Dict[str, float] = {
    'atto': 0.1, 'femto': 0.1, 'pico': 0.1, 'nano': 0.1, 'tiny': 0.4,
    'small': 0.6, 'base': 0.7, 'large': 0.7, 'xlarge': 0.8, 'huge': 0.5,
}
# A custom dict(depths, dims) arch gets this.
CUSTOM_DROP_PATH = 0.1

# Short names as the paper writes them ("ConvNeXt-T").
ARCH_ALIASES: Dict[str, str] = {
    't': 'tiny', 's': 'small', 'b': 'base', 'l': 'large', 'xl': 'xlarge',
    'h': 'huge',
}

NUM_STAGES = 4
STRIDES: Tuple[int, ...] = (4, 8, 16, 32)


def preset_name(arch: str) -> str:
    """The table's name of a preset spelled any way (``'T'`` -> ``'tiny'``).

    Args:
        arch (str): A preset name or alias, any case.

    Returns:
        str: The lower-case name, an alias replaced; not checked against
        the table (:func:`resolve_arch` does that).
    """
    return ARCH_ALIASES.get(arch.lower(), arch.lower())


def resolve_arch(arch: Union[str, Dict[str, Sequence[int]]],
                 version: Optional[int] = None
                 ) -> Dict[str, Tuple[int, ...]]:
    """Turn a preset name or a custom ``dict(depths, dims)`` into settings.

    Args:
        arch (str | dict): A key of :data:`ARCH_SETTINGS` (or an alias such
            as ``'T'``), or ``dict(depths=[...4 ints], dims=[...4 ints])``
            (``channels`` instead of ``dims``, as mmpretrain's ConvNeXt
            writes it, is accepted).
        version (int, optional): 1 or 2: the preset must be one that
            version defines (:data:`VERSION_PRESETS`). Defaults to None: any
            preset of the table (the dims of a name do not depend on the
            version, so channel arithmetic needs none).

    Returns:
        dict: ``dict(depths=tuple, dims=tuple)`` with four positive ints each.
    """
    if version is not None and version not in VERSION_PRESETS:
        raise ValueError(
            f'unknown ConvNeXt version {version!r}; choose one of: '
            f"{', '.join(map(str, VERSION_PRESETS))}")
    if isinstance(arch, str):
        names = VERSION_PRESETS[version] if version else tuple(ARCH_SETTINGS)
        key = preset_name(arch)
        if key not in names:
            owner = VERSION_CLASSES[version] if version else 'ConvNeXt'
            others = [VERSION_CLASSES[v] for v, presets in
                      VERSION_PRESETS.items() if key in presets]
            hint = f" ('{key}' is a preset of {', '.join(others)})" \
                if others else ''
            raise ValueError(
                f"unknown {owner} arch '{arch}'{hint}; choose one of: "
                f"{', '.join(names)} (or a custom "
                "dict(depths=[d0, d1, d2, d3], dims=[c0, c1, c2, c3]))")
        return dict(ARCH_SETTINGS[key])
    if not isinstance(arch, dict):
        raise TypeError(
            f'arch must be a preset name or dict(depths=..., dims=...), '
            f'got {type(arch).__name__}: {arch!r}')
    if 'channels' in arch:  # mmpretrain's ConvNeXt spells dims 'channels'
        if 'dims' in arch:
            raise ValueError(
                f'custom arch {arch!r} gives both dims and channels (the '
                "same thing: mmpretrain's name for dims); keep one")
        arch = {('dims' if k == 'channels' else k): v
                for k, v in arch.items()}
    unknown = set(arch) - {'depths', 'dims'}
    missing = {'depths', 'dims'} - set(arch)
    if unknown or missing:
        raise ValueError(
            f'custom arch {arch!r} must have exactly the keys depths and '
            f"dims (or mmpretrain's channels) (missing: {sorted(missing)}, "
            f'unknown: {sorted(unknown)})')
    settings = {}
    for key in ('depths', 'dims'):
        value = arch[key]
        if (not isinstance(value, (list, tuple)) or len(value) != NUM_STAGES
                or not all(isinstance(v, int) and not isinstance(v, bool)
                           and v > 0 for v in value)):
            raise ValueError(
                f'custom arch {key}={value!r} must be {NUM_STAGES} positive '
                f'ints, one per stage, e.g. {key}='
                f"{list(ARCH_SETTINGS['tiny'][key])}")
        settings[key] = tuple(value)
    return settings


def normalize_out_indices(out_indices: Union[int, Sequence[int]]
                          ) -> Tuple[int, ...]:
    """Check stage indices and return them sorted, non-negative, unique.

    Args:
        out_indices (int | Sequence[int]): Stage indices in
            ``-NUM_STAGES..NUM_STAGES - 1`` (negative counts from the end).

    Returns:
        tuple[int, ...]: E.g. ``(-1, 0)`` -> ``(0, 3)``.
    """
    if isinstance(out_indices, int) and not isinstance(out_indices, bool):
        out_indices = (out_indices, )
    if (not isinstance(out_indices, (list, tuple)) or not out_indices
            or not all(isinstance(i, int) and not isinstance(i, bool)
                       for i in out_indices)):
        raise ValueError(
            f'out_indices={out_indices!r} must be a non-empty sequence of '
            f'ints in -{NUM_STAGES}..{NUM_STAGES - 1}, e.g. (0, 1, 2, 3)')
    normalised = []
    for i in out_indices:
        if not -NUM_STAGES <= i < NUM_STAGES:
            raise ValueError(
                f'out_indices entry {i} is out of range; ConvNeXt has '
                f'{NUM_STAGES} stages, use indices in '
                f'-{NUM_STAGES}..{NUM_STAGES - 1}')
        normalised.append(i % NUM_STAGES)
    if len(set(normalised)) != len(normalised):
        raise ValueError(
            f'out_indices={tuple(out_indices)!r} names a stage twice '
            f'(normalised: {tuple(normalised)})')
    return tuple(sorted(normalised))


def out_channels(arch: Union[str, Dict[str, Sequence[int]]],
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3)
                 ) -> List[int]:
    """Channels of the features a ConvNeXt returns, in output order.

    What a neck's or decode head's ``in_channels`` must be; configs use it
    instead of retyping dims (``neck=dict(in_channels=out_channels(arch))``).

    Args:
        arch (str | dict): As for :func:`resolve_arch`.
        out_indices (int | Sequence[int]): As the backbone's
            ``out_indices``. Defaults to (0, 1, 2, 3).

    Returns:
        list[int]: E.g. ``[96, 192, 384, 768]`` for ``'tiny'``.
    """
    dims = resolve_arch(arch)['dims']
    return [dims[i] for i in normalize_out_indices(out_indices)]


def dense_drop_path(arch: Union[str, Dict[str, Sequence[int]]]) -> float:
    """The drop-path rate a backbone of ``arch`` gets for dense prediction.

    Args:
        arch (str | dict): A preset name or alias (checked against the
            table), or a custom ``dict(depths, dims)``.

    Returns:
        float: :data:`DENSE_DROP_PATH` of the preset, or
        :data:`CUSTOM_DROP_PATH` for a custom arch.
    """
    if not isinstance(arch, str):
        return CUSTOM_DROP_PATH
    resolve_arch(arch)  # an unknown name: the error that lists the presets
    return DENSE_DROP_PATH[preset_name(arch)]
