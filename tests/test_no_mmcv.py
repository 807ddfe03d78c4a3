"""The plugin needs no mmcv: its own drop path, and the backbone, checkpoint
conversion and layer-wise lr decay in a process where mmcv cannot be
imported."""
import os.path as osp
import subprocess
import sys

import pytest
import torch

from convnext_backbone.drop_path import DropPath

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

# Run in a fresh interpreter: mmcv may already be in this process's
# sys.modules (mmdet, mmseg), and an import cannot be taken back.
WITHOUT_MMCV = r'''
import importlib.abc
import sys


class NoMmcv(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == 'mmcv' or name.startswith('mmcv.'):
            raise ImportError(f'{name} is hidden by test_no_mmcv')
        return None


sys.meta_path.insert(0, NoMmcv())
try:
    import mmcv  # noqa: F401
except ImportError:
    pass
else:
    raise AssertionError('the finder did not hide mmcv')

import torch
from mmengine.registry import MODELS

from convnext_backbone import (ConvNeXtLayerDecayOptimizerConstructor,
                               convert_to_convnext)

torch.manual_seed(0)
model = MODELS.build(dict(type='ConvNeXt', arch='atto', drop_path_rate=0.1))
outs = model.train()(torch.randn(2, 3, 32, 32))
assert [o.shape[1] for o in outs] == list(model.out_channels)
sum(o.sum() for o in outs).backward()

# An mmpretrain classifier file of this model: renamed blocks under
# backbone., a classification head; conversion gives back the trunk.
trunk = {k: v for k, v in model.state_dict().items()
         if not k.startswith('norm')}
renames = (('.dwconv.', '.depthwise_conv.'),
           ('.pwconv1.', '.pointwise_conv1.'),
           ('.pwconv2.', '.pointwise_conv2.'))
synthetic = {}
for key, value in trunk.items():
    for ours, theirs in renames:
        key = key.replace(ours, theirs)
    synthetic['backbone.' + key] = value.clone()
synthetic['head.fc.weight'] = torch.zeros(10, model.dims[-1])
converted = convert_to_convnext(synthetic)
assert converted.keys() == trunk.keys()
assert all(torch.equal(converted[k], trunk[k]) for k in trunk)

wrapper = ConvNeXtLayerDecayOptimizerConstructor(
    dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05)),
    dict(decay_rate=0.7))(model)
wrapper.step()
# atto: L = 5, ids 0..6
assert {g['layer_id'] for g in wrapper.optimizer.param_groups} == set(range(7))

assert not any(m == 'mmcv' or m.startswith('mmcv.') for m in sys.modules)
print('OK without mmcv')
'''


def test_backbone_conversion_and_decay_without_mmcv(cpu_env):
    proc = subprocess.run([sys.executable, '-c', WITHOUT_MMCV],
                          capture_output=True, text=True, timeout=300,
                          cwd=REPO, env=cpu_env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.strip().endswith('OK without mmcv'), proc.stdout


# -------------------------------------------------------------- drop path
def test_drop_path_is_identity_in_eval_and_at_zero():
    x = torch.randn(8, 3, 4, 4)
    assert DropPath(0.5).eval()(x) is x
    assert DropPath(0.).train()(x) is x


def test_drop_path_drops_whole_samples_and_scales_the_kept():
    p, n = 0.25, 4000
    torch.manual_seed(0)
    x = torch.rand(n, 3, 2) + 1  # no zero entries
    x.requires_grad_(True)
    out = DropPath(p).train()(x)
    kept = (out != 0).flatten(1)
    # per sample: every entry kept or every entry zeroed
    assert torch.equal(kept.all(1), kept.any(1))
    kept = kept.all(1)
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.03)
    assert torch.equal(out[kept], x[kept] / (1 - p))
    out.sum().backward()
    expected_grad = kept.float().div(1 - p)[:, None, None].expand_as(x)
    assert torch.equal(x.grad, expected_grad)


def test_drop_path_draws_as_mmcv_does():
    """Seeded runs drop the same samples as with mmcv's DropPath, so
    numbers recorded with it hold."""
    bricks = pytest.importorskip(
        'mmcv.cnn.bricks', reason='mmcv is not installed: nothing to match')
    x = torch.randn(64, 8, 3, 3)
    outs = []
    for cls in (DropPath, bricks.DropPath):
        torch.manual_seed(3)
        outs.append(cls(0.3).train()(x))
    assert torch.equal(*outs)


def test_drop_path_attribute_repr_and_bad_rate():
    module = DropPath(0.2)
    assert module.drop_prob == 0.2
    assert 'drop_prob=0.2' in repr(module)
    with pytest.raises(ValueError, match=r'drop_prob=1\.0 is outside'):
        DropPath(1.0)
