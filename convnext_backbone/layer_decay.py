"""The layer-wise learning-rate decay rule of ConvNeXt (pure functions).

The rule is that of the official dense code (facebookresearch/ConvNeXt,
``object_detection/mmcv_custom/layer_decay_optimizer_constructor.py`` and
``semantic_segmentation/mmcv_custom/layer_decay_optimizer_constructor.py``),
also in mmdet's and mmseg's ``LearningRateDecayOptimizerConstructor``.
:mod:`convnext_backbone.optim_constructor` wires it into mmengine; nothing
here imports the backbone or a framework.
"""
import math
from typing import Sequence

DECAY_TYPES = ('layer_wise', 'stage_wise')


def infer_num_layers(depths: Sequence[int]) -> int:
    """``L`` of the rule for a backbone: ``3 + ceil(depths[2] / 3)``.

    Stage 2 block ``b`` gets id ``3 + b // 3`` (three blocks per id), stage 3
    gets ``L``; this is the smallest ``L`` that keeps every stage-2 id below
    stage 3's: 6 for the 9 blocks of ConvNeXt-T (and nano's 8), 12 for the 27
    of S/B/L/XL, 5 for the 6 of atto/femto/pico.
    """
    return 3 + math.ceil(depths[2] / 3)


def get_layer_id_for_convnext(param_name: str, num_layers: int,
                              decay_type: str) -> int:
    """Layer id of a ConvNeXt parameter (the official rule).

    Args:
        param_name (str): Name relative to the backbone, e.g.
            ``'downsample_layers.0.0.weight'`` or ``'stages.2.7.gamma'``.
            Names outside the trunk (``norm{i}``, or anything else) get the
            last id.
        num_layers (int): ``L``; ids run from 0 to ``L + 1``.
        decay_type (str): ``'layer_wise'`` (COCO runs) or ``'stage_wise'``
            (ADE20K runs).

    Returns:
        int: The layer id; its group scale is
        ``decay_rate ** (num_layers + 1 - id)``.
    """
    if decay_type not in DECAY_TYPES:
        raise ValueError(f"unknown decay_type '{decay_type}'; choose one of: "
                         f"{', '.join(DECAY_TYPES)}")
    parts = param_name.split('.')
    if decay_type == 'layer_wise':
        if parts[0] == 'downsample_layers':
            stage = int(parts[1])
            return {0: 0, 1: 2, 2: 3}.get(stage, num_layers)
        if parts[0] == 'stages':
            stage, block = int(parts[1]), int(parts[2])
            if stage in (0, 1):
                return stage + 1
            if stage == 2:
                return 3 + block // 3
            return num_layers
        return num_layers + 1
    # stage_wise: the official code returns ``N - 1`` for the rest, with
    # N = L + 2, i.e. the same top id L + 1 as layer_wise.
    if parts[0] == 'downsample_layers':
        return 0
    if parts[0] == 'stages':
        return int(parts[1]) + 1
    return num_layers + 1
