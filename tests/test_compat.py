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
