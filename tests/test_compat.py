"""torch >= 2.6 safe loading: mmengine checkpoints resume, callables don't."""
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner

import convnext_backbone  # noqa: F401  (applies the compat fixes)


class TinyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels, mode='tensor'):
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((out.squeeze(1) - labels)**2).mean())
        return out


class ToyDataset(torch.utils.data.Dataset):
    metainfo = dict(classes=('a', ))

    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(2, generator=g),
                    labels=torch.tensor(float(i % 2)))


def make_runner(work_dir, max_iters, resume=False):
    return Runner(
        model=TinyModel(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyDataset(), batch_size=2,
                              sampler=dict(type='DefaultSampler',
                                           shuffle=True),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=dict(type='MultiStepLR', milestones=[3],
                             by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=2, by_epoch=False)),
        randomness=dict(seed=0), resume=resume,
        default_scope='mmengine', experiment_name=f'exp{max_iters}{resume}')


def test_runner_checkpoint_resumes(tmp_path):
    make_runner(tmp_path, 2).train()
    ckpt = tmp_path / 'iter_2.pth'
    # without the package's allow-list, torch refuses mmengine's own file
    bare = subprocess.run(
        [sys.executable, '-c', 'import sys, torch; '
         'torch.load(sys.argv[1], weights_only=True)', str(ckpt)],
        capture_output=True, text=True)
    assert bare.returncode != 0 and 'HistoryBuffer' in bare.stderr
    runner = make_runner(tmp_path, 4, resume=True)
    runner.train()
    assert runner.iter == 4
    hub = runner.message_hub
    # 2 losses restored from the checkpoint + 2 new ones
    assert len(hub.get_scalar('train/loss').data[0]) == 4
    # the safe load kept weights_only: the resumed state has numpy arrays
    state = torch.load(str(ckpt), weights_only=True)
    assert isinstance(
        state['message_hub']['log_scalars']['train/loss']._log_history,
        np.ndarray)


RAN = []


def trigger():
    RAN.append('pwned')
    return 'pwned'


class Payload:

    def __reduce__(self):
        return (trigger, ())


def test_pickled_callable_still_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'x': Payload()}, path)
    with pytest.raises(pickle.UnpicklingError, match='test_compat.trigger'):
        torch.load(str(path), weights_only=True)
    # the runner's own loader path refuses it too
    from mmengine.runner.checkpoint import CheckpointLoader
    with pytest.raises(pickle.UnpicklingError):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert RAN == []


def test_every_loader_refuses_a_code_executing_pickle(tmp_path):
    """load_checkpoint (init_cfg='Pretrained', load_from) and the package's
    loader refuse it on either stack: onedl-mmengine's loader would retry
    with weights_only=False, the package replaces it (compat)."""
    from mmengine.runner import checkpoint as mm_checkpoint

    from convnext_backbone.checkpoint import (CheckpointError,
                                              load_checkpoint_file)
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'x': Payload()}, path)
    model = nn.Linear(1, 1)
    with pytest.raises(pickle.UnpicklingError,
                       match='test_compat.trigger') as info:
        mm_checkpoint.load_checkpoint(model, str(path), map_location='cpu')
    if hasattr(mm_checkpoint, '_safe_torch_load'):  # onedl-mmengine
        assert 'add_safe_globals' in str(info.value)
    with pytest.raises(CheckpointError, match='weights_only=True'):
        load_checkpoint_file(str(path))
    assert RAN == []


def test_safe_torch_load_names_the_global_and_the_fix(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'x': Payload()}, path)
    with pytest.raises(pickle.UnpicklingError) as info:
        convnext_backbone.compat.safe_torch_load(str(path))
    message = str(info.value)
    assert str(path) in message and 'test_compat.trigger' in message
    assert 'add_safe_globals' in message and 'custom_imports' in message
    assert RAN == []
    # plain tensors and mmengine's own types still load
    good = tmp_path / 'good.pth'
    torch.save({'w': torch.arange(3), 'a': np.arange(2)}, good)
    state = convnext_backbone.compat.safe_torch_load(str(good))
    assert state['w'].tolist() == [0, 1, 2]


def test_config_prefix_follows_the_installed_distribution(monkeypatch):
    """A forked distribution (onedl-mmsegmentation installs the module mmseg)
    takes the place of the upstream one in mmengine's `mmseg::` prefix."""
    from mmengine.config import utils as config_utils
    table = getattr(config_utils, 'MODULE2PACKAGE', None) or \
        config_utils.PKG2PROJECT
    monkeypatch.setitem(table, 'yaml', 'no-such-distribution')
    changed = convnext_backbone.compat.map_forked_distributions()
    assert changed.get('yaml', '').lower() == 'pyyaml'
    assert table['yaml'] == changed['yaml']
    # an upstream distribution that is installed is left alone
    assert 'mmdet' not in changed


def test_mmseg_prefix_resolves_on_this_stack():
    from mmengine.config import Config
    cfg = Config.fromfile(
        str(__import__('pathlib').Path(__file__).parents[1] / 'configs' /
            'upernet_convnext_t_512.py'))
    assert cfg.model.decode_head.type == 'UPerHead'
