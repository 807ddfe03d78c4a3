"""Reliability: damaged checkpoints, inconsistent configs, and the toy
detector / segmentor trained by 2 CPU processes through tools/dist_train.sh
(then resumed by one). Training subprocesses run on CPU (``cpu_env`` hides
CUDA) whatever GPUs the machine has."""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from tools.lib.errors import ConfigPrepareError
from tools.lib.prepare import prepare_test_cfg, prepare_train_cfg
from tools.lib.resume import find_resume_checkpoint
from tools.lib.toy_data import toy_cfg_options

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOY_DET = osp.join(REPO, 'configs', 'toy', 'mask_rcnn_convnext_atto_toy.py')
TOY_SEG = osp.join(REPO, 'configs', 'toy', 'upernet_convnext_atto_toy.py')


# ------------------------------------------------------------ checkpoints
@pytest.fixture
def work_dir_with_checkpoints(tmp_path):
    """epoch_1 and epoch_2 checkpoints; last_checkpoint names epoch_2."""
    for epoch in (1, 2):
        path = tmp_path / f'epoch_{epoch}.pth'
        torch.save({'meta': {'epoch': epoch},
                    'state_dict': {'w': torch.full((64, 64), epoch)}}, path)
        os.utime(path, (epoch * 1000, epoch * 1000))
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_2.pth'))
    return tmp_path


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def flip_a_byte(path):
    """Corrupt the stored tensor bytes (the zip's CRC no longer matches)."""
    data = bytearray(path.read_bytes())
    start = data.index(b'\x00\x00\x00@') if b'\x00\x00\x00@' in data \
        else len(data) // 2
    data[start + 8] ^= 0xFF
    path.write_bytes(bytes(data))


def test_resume_takes_the_newest_good_checkpoint(work_dir_with_checkpoints):
    wd = work_dir_with_checkpoints
    assert find_resume_checkpoint(str(wd)) == str(wd / 'epoch_2.pth')
    truncate(wd / 'epoch_2.pth')
    assert find_resume_checkpoint(str(wd)) == str(wd / 'epoch_1.pth')


@pytest.mark.parametrize('damage', [truncate, flip_a_byte])
def test_resume_says_why_it_cannot(work_dir_with_checkpoints, damage):
    wd = work_dir_with_checkpoints
    for epoch in (1, 2):
        damage(wd / f'epoch_{epoch}.pth')
    with pytest.raises(ConfigPrepareError) as err:
        find_resume_checkpoint(str(wd))
    msg = str(err.value)
    assert 'no readable checkpoint' in msg
    assert 'epoch_1.pth' in msg and 'epoch_2.pth' in msg


def test_explicit_damaged_checkpoint_is_named(work_dir_with_checkpoints):
    wd = work_dir_with_checkpoints
    truncate(wd / 'epoch_2.pth')
    cfg = Config.fromfile(TOY_DET)
    with pytest.raises(ConfigPrepareError,
                       match=r'--resume .*epoch_2.pth: not a complete'):
        prepare_train_cfg(cfg, resume=str(wd / 'epoch_2.pth'),
                          work_dir=str(wd), check_data=False)
    with pytest.raises(ConfigPrepareError, match=r'epoch_2.pth: not a'):
        prepare_test_cfg(cfg, str(wd / 'epoch_2.pth'), check_data=False)
    # and the auto mode falls back to epoch_1
    prepared = prepare_train_cfg(cfg, resume='auto', work_dir=str(wd),
                                 check_data=False)
    assert prepared.load_from == str(wd / 'epoch_1.pth')


# ---------------------------------------------------------------- configs
@pytest.mark.parametrize('config, key, value, fragment', [
    ('mask_rcnn_convnext_t.py', 'model.neck.in_channels', [96, 192, 384, 512],
     'set model.neck.in_channels=[96, 192, 384, 768]'),
    ('upernet_convnext_t_512.py', 'model.decode_head.in_channels',
     [96, 192, 384, 384], 'set model.decode_head.in_channels=[96, 192, 384, '
     '768]'),
    ('upernet_convnext_t_512.py', 'model.auxiliary_head.in_channels', 768,
     'set model.auxiliary_head.in_channels=384'),
])
def test_head_channels_must_match_the_backbone(config, key, value, fragment):
    cfg = Config.fromfile(osp.join(REPO, 'configs', config))
    with pytest.raises(ConfigPrepareError) as err:
        prepare_train_cfg(cfg, cfg_options={key: value}, check_data=False)
    assert fragment in str(err.value)
    assert "ConvNeXt(arch='tiny'" in str(err.value)


# ------------------------------------------------------------ distributed
def data_options(root, coco):
    """toy_cfg_options as ``key=value`` command-line words."""
    return [f'{k}={v}' for k, v in toy_cfg_options(root, coco).items()]


def dist_train(config, work_dir, hook, env, port, options):
    """tools/dist_train.sh with 2 CPU processes; both ranks must end with
    the same weights. Returns the log and that weights hash."""
    cfg = Config.fromfile(config)
    cfg.custom_imports.imports.append(hook.module)
    cfg.custom_hooks = cfg.custom_hooks + [dict(type=hook.type)]
    dumped = osp.join(work_dir, 'config.py')
    os.makedirs(work_dir)
    cfg.dump(dumped)
    proc = subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), dumped, '2',
         '--work-dir', work_dir, '--cfg-options', *options],
        cwd=REPO, capture_output=True, text=True, timeout=500,
        env=dict(env, PORT=str(port), PYTHONPATH=hook.pythonpath))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    hashes = [open(osp.join(work_dir, f'rank{r}.sha256')).read()
              for r in (0, 1)]
    assert hashes[0] == hashes[1]
    return proc.stdout + proc.stderr, hashes[0]


def test_dist_train_toy_detector_then_resume_in_one_process(
        toy_coco, weights_hash_hook, cpu_env, free_port, tmp_path):
    root = toy_coco
    options = data_options(root, coco=True) + [
        'train_cfg.max_epochs=1', 'train_dataloader.batch_size=2',
        'default_hooks.logger.interval=1']
    work_dir = str(tmp_path / 'dist')
    log, sha = dist_train(TOY_DET, work_dir, weights_hash_hook, cpu_env,
                          free_port, options)
    # 8 images over 2 ranks x 2 per batch: 2 iterations
    assert re.search(r'Epoch\(train\) \[1\]\[2/2\]', log)
    ckpt = torch.load(osp.join(work_dir, 'epoch_1.pth'), weights_only=True)
    params = [k for k in ckpt['state_dict'] if 'running' not in k
              and 'num_batches' not in k]
    # the checkpoint rank 0 saved holds the weights both ranks ended with
    assert weights_hash_hook.sha256(ckpt['state_dict'], params) == sha

    # the 2-process checkpoint continues in a single process
    one = str(tmp_path / 'one')
    shutil.copytree(work_dir, one)
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'train.py'), TOY_DET,
         '--work-dir', one, '--resume', osp.join(one, 'epoch_1.pth'),
         '--cfg-options', *data_options(root, coco=True),
         'train_cfg.max_epochs=2',
         'train_dataloader.batch_size=2'],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=cpu_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert 'resumed epoch: 1' in out
    assert 'random states are restored only in single-process' in out
    assert osp.isfile(osp.join(one, 'epoch_2.pth'))


def test_dist_train_toy_segmentor_syncbn_config(
        toy_ade, weights_hash_hook, cpu_env, free_port, tmp_path):
    root = toy_ade
    work_dir = str(tmp_path / 'dist')
    cfg = Config.fromfile(TOY_SEG)
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    options = data_options(root, coco=False) + [
        'train_cfg.max_iters=3', 'train_cfg.val_interval=3',
        'train_dataloader.batch_size=2', 'default_hooks.logger.interval=1']
    log, _ = dist_train(TOY_SEG, work_dir, weights_hash_hook, cpu_env,
                        free_port, options)
    assert re.search(r'Iter\(train\) \[3/3\]', log)
    assert 'SyncBN' in log  # the CPU fallback is said, not silent


@pytest.mark.skipif(
    torch.cuda.device_count() < 2,
    reason=f'needs 2 GPUs, {torch.cuda.device_count()} visible: the GPU '
    'variant of the 2-process run (nccl, SyncBN kept)')
def test_dist_train_toy_segmentor_on_two_gpus(toy_ade, weights_hash_hook,
                                               free_port, tmp_path):
    env = dict(os.environ, PYTHON=sys.executable,
               CUDA_VISIBLE_DEVICES='0,1', OMP_NUM_THREADS='1')
    options = data_options(toy_ade, coco=False) + [
        'train_cfg.max_iters=3', 'train_cfg.val_interval=3',
        'train_dataloader.batch_size=2', 'default_hooks.logger.interval=1']
    log, _ = dist_train(TOY_SEG, str(tmp_path / 'dist'), weights_hash_hook,
                        env, free_port, options)
    assert re.search(r'Iter\(train\) \[3/3\]', log)
    assert 'SyncBN -> BN' not in log  # several GPUs keep SyncBN
