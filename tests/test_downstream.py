"""Downstream OpenMMLab projects (``make downstream``: mmpose 1.3.2,
mmpretrain 1.2.0): their shipped configs with ConvNeXt through
``custom_imports`` + ``swap_backbone``, one training step and one prediction
each; and the registry names when mmpretrain, which has its own ConvNeXt,
is imported beside mmdet / mmseg. Each test skips, with the import error as
its reason, where its project does not import (not installed; mmpretrain
1.2.0 imports torchvision, which needs the torch build it was made for)."""
import importlib

import pytest
import torch
from mmengine.registry import MODELS, DefaultScope
from mmengine.utils import import_modules_from_strings

import convnext_backbone
from convnext_backbone import swap_backbone
from helpers import shipped, step_and_predict
from tools.lib.compat_record import record_case, recording, swap_fields


def downstream(module, case=None):
    """Import an optional project's module, or skip with the reason it does
    not import (as ``pytest.importorskip``, but the reason keeps the import
    error: a missing project and a missing dependency differ). A matrix
    ``case`` records the skip for tools/compat_matrix.py."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        reason = (f'{module} does not import here ({type(exc).__name__}: '
                  f'{exc}); `make downstream STACK=onedl` installs and runs '
                  'mmpose and mmpretrain (the upstream profile installs '
                  'mmpretrain 1.2.0, which needs a torchvision that no PyPI '
                  "build provides beside its CPU torch)")
        if case is not None and recording():
            record_case(**case, result='not run here', note=reason)
        pytest.skip(reason)


def build_and_step(cfg, batch):
    """The swapped config's model through its custom_imports, one training
    step with its optim wrapper, one prediction."""
    import_modules_from_strings(**cfg.custom_imports)
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:  # as Runner merges it
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny steps; see test_swap.one_thread
    try:
        return step_and_predict(model_cfg, cfg.optim_wrapper,
                                cfg.default_scope, batch)
    finally:
        torch.set_num_threads(threads)


MMPOSE = dict(framework='mmpose', architecture='top-down heatmap',
              config='body_2d_keypoint/topdown_heatmap/coco/'
              'td-hm_res50_8xb64-210e_coco-256x192.py')
MMPRETRAIN = dict(framework='mmpretrain', architecture='ImageClassifier',
                  config='resnet/resnet50_8xb32_in1k.py')


def passed(case, new):
    """Record a passed case for tools/compat_matrix.py (when it runs us)."""
    if recording():
        record_case(**case, **swap_fields(new), result='pass', note='')


def test_mmpose_topdown_heatmap():
    downstream('mmpose.models', MMPOSE)
    from mmpose.testing import get_packed_inputs
    cfg = shipped('mmpose', MMPOSE['config'])
    new = swap_backbone(cfg, 'atto')
    assert new.model.head.in_channels == 320  # ResNet-50 C5 (2048) -> atto
    assert tuple(new.model.backbone.out_indices) == (3, )
    assert new.optim_wrapper.optimizer.weight_decay == 0.  # Adam's default
    preds = build_and_step(new, get_packed_inputs(2, with_simcc_label=False))
    assert len(preds) == 2
    for pred in preds:
        assert pred.pred_instances.keypoints.shape == (1, 17, 2)
        assert pred.pred_instances.keypoint_scores.shape == (1, 17)
    passed(MMPOSE, new)


def test_mmpretrain_image_classifier():
    downstream('mmpretrain.models', MMPRETRAIN)
    from mmpretrain.structures import DataSample
    cfg = shipped('mmpretrain', MMPRETRAIN['config'])
    new = swap_backbone(cfg, 'atto', pretrained='convnext_atto.pth')
    # mmpretrain's own ConvNeXt would win in its scope: the root's by name
    assert new.model.backbone.type == 'mmengine.ConvNeXt'
    assert new.model.head.in_channels == 320
    assert new.data_preprocessor.to_rgb is True
    new.model.backbone.init_cfg = None  # no file: random weights
    gen = torch.Generator().manual_seed(0)
    batch = dict(
        inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8,
                              generator=gen) for _ in range(2)],
        data_samples=[DataSample().set_gt_label(i) for i in (3, 7)])
    preds = build_and_step(new, batch)
    assert [p.pred_score.shape for p in preds] == [(1000, )] * 2
    passed(MMPRETRAIN, new)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_names_with_mmpretrain_imported(scope):
    """mmpretrain registers its own ConvNeXt in its scope only: an mmdet /
    mmseg config's 'ConvNeXt' stays this package's, 'mmpretrain.ConvNeXt'
    is mmpretrain's."""
    downstream('mmpretrain.models')
    from mmpretrain.models import ConvNeXt as MMPretrainConvNeXt
    with DefaultScope.overwrite_default_scope(scope):
        ours = MODELS.build(dict(type='ConvNeXt', arch='atto'))
        theirs = MODELS.build(dict(type='mmpretrain.ConvNeXt', arch='atto'))
    assert type(ours) is convnext_backbone.ConvNeXt
    assert type(theirs) is MMPretrainConvNeXt
