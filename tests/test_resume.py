"""Exact resume: a toy-detector run killed (SIGKILL) after a checkpoint and
restarted with ``--resume`` ends with the same weights as an uninterrupted
run. Both go through ``tools/train.py`` as a user runs it."""
import os.path as osp
import signal
import subprocess
import sys
import time

import torch

from tools.lib.toy_data import toy_cfg_options

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO, 'configs', 'toy', 'mask_rcnn_convnext_atto_toy.py')
EPOCHS = 3


def train_cmd(data_root: str, work_dir: str, *extra: str) -> list:
    data = [f'{k}={v}'
            for k, v in toy_cfg_options(data_root, coco=True).items()]
    return [
        sys.executable, osp.join(REPO, 'tools', 'train.py'), CONFIG,
        '--work-dir', work_dir, *extra, '--cfg-options', *data,
        f'train_cfg.max_epochs={EPOCHS}',
        # validate every epoch: evaluation must not shift the random stream
        'train_cfg.val_interval=1',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=-1',
        'randomness.deterministic=True',
        # the paper-sized drop path makes the random stream matter
        'model.backbone.drop_path_rate=0.3'
    ]


def final_state(work_dir: str) -> dict:
    ckpt = torch.load(osp.join(work_dir, f'epoch_{EPOCHS}.pth'),
                      weights_only=True)
    return ckpt


def test_killed_and_resumed_run_matches_uninterrupted(toy_coco, cpu_env,
                                                      tmp_path):
    toy_root = toy_coco
    # On CPU (CUDA hidden): the bit-exact guarantee is a CPU one, see
    # docs/train_test.md
    env = cpu_env
    full, cut = str(tmp_path / 'full'), str(tmp_path / 'cut')
    subprocess.run(train_cmd(toy_root, full), check=True, env=env,
                   capture_output=True, cwd=REPO)

    proc = subprocess.Popen(train_cmd(toy_root, cut), env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first = osp.join(cut, 'epoch_1.pth')
    deadline = time.time() + 300
    while not osp.exists(osp.join(cut, 'last_checkpoint')):
        assert proc.poll() is None, 'training ended before a checkpoint'
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert osp.exists(first)
    assert not osp.exists(osp.join(cut, f'epoch_{EPOCHS}.pth'))

    resumed = subprocess.run(train_cmd(toy_root, cut, '--resume'),
                             env=env, capture_output=True, text=True,
                             cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert 'RandomStateHook: random states restored' in log
    assert 'resumed epoch: ' in log

    a, b = final_state(full), final_state(cut)
    assert a['meta']['iter'] == b['meta']['iter']
    assert a['state_dict'].keys() == b['state_dict'].keys()
    differing = [k for k in a['state_dict']
                 if not torch.equal(a['state_dict'][k], b['state_dict'][k])]
    assert differing == []
    for sa, sb in zip(a['optimizer']['state'].values(),
                      b['optimizer']['state'].values()):
        for key in sa:
            assert torch.equal(sa[key], sb[key])
