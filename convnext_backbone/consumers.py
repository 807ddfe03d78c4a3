"""Who reads a backbone's outputs in an OpenMMLab model config.

:func:`~convnext_backbone.swap.swap_backbone` rewrites the channels of these
modules and ``tools/lib/checks.py`` checks them against ConvNeXt's; both ask
:func:`find_consumers`, so the rewrite and the check see the same modules.
"""
from typing import List, NamedTuple


class Consumer(NamedTuple):
    """A config dict fed by the backbone's outputs.

    Attributes:
        path (str): Its key path, as ``--cfg-options`` writes it
            (``'model.neck'``, ``'model.decode_head.0'``).
        node (dict): The config dict itself: editing it edits the config.
        is_neck (bool): A neck takes every output, in order; a head the
            outputs its ``in_index`` names (mmseg's default: the last).
    """
    path: str
    node: dict
    is_neck: bool


def find_consumers(model: dict) -> List[Consumer]:
    """The modules of ``model`` that take the backbone's outputs as input.

    The neck (the first of a list: the others read the one before) if it
    has ``in_channels``; otherwise every ``model.*head`` dict, a list of
    heads entry by entry (mmseg's decode / auxiliary heads, mmpose's and
    mmpretrain's head, mmdet's heads of a model without neck). With such a
    neck the heads read the neck, not the backbone. A neck without
    ``in_channels`` (mmpretrain's ``GlobalAveragePooling``) keeps the
    channels, so the heads count as reading the backbone.

    Args:
        model (dict): ``cfg.model``.

    Returns:
        list[Consumer]: In config order; heads without ``in_channels``
        included (a head can hold the backbone's channels deeper inside,
        as mmdet's C4 ``roi_head`` does).
    """
    neck, path = model.get('neck'), 'model.neck'
    if isinstance(neck, (list, tuple)) and neck:
        neck, path = neck[0], 'model.neck.0'
    if isinstance(neck, dict) and 'in_channels' in neck:
        return [Consumer(path, neck, is_neck=True)]
    heads = []
    for key, value in model.items():
        if not key.endswith('head'):
            continue
        many = isinstance(value, (list, tuple))
        for i, node in enumerate(value if many else [value]):
            if isinstance(node, dict):
                heads.append(Consumer(
                    f'model.{key}' + (f'.{i}' if many else ''), node,
                    is_neck=False))
    return heads
