"""tools/ and tools.lib as a user meets them.

- tools/train.py trains a micro Mask R-CNN (a paper config shrunk through the
  same option merge users have) on toy data; tools/test.py evaluates the
  checkpoint, writes metrics.json, --show-dir pictures and --out results;
- a missing dataset and a misspelt --cfg-options key stop early with
  messages that say what to do;
- too many CUDA processes for the visible GPUs stop before any work;
- tools/analysis/get_flops.py prints params and FLOPs;
- the CPU / single-process adaptation of the configs (what --amp selects
  with and without CUDA), and the segmentation test options (--tta,
  --show-dir, --out), in-process.

Subprocesses run on CPU (CUDA hidden) whatever GPUs the machine has; the
2-process training test is in test_reliability.py.
"""
import glob
import json
import os
import os.path as osp
import pickle
import re
import subprocess
import sys
from typing import Dict, List

import pytest
import torch
from mmengine.config import Config

from helpers import CONFIG_DIR, load, tiny_options, toy_options
from tools.lib import device
from tools.lib.cfg_options import merge_cfg_options
from tools.lib.checks import check_backbone_channels, check_dataset_paths
from tools.lib.device import adapt_to_device, check_cuda_processes
from tools.lib.errors import (ConfigPrepareError, DatasetNotFoundError,
                              UnknownConfigKeyError)
from tools.lib.prepare import prepare_test_cfg, prepare_train_cfg
from tools.lib.runner import build_runner

REPO = osp.dirname(CONFIG_DIR)

PYTHON = sys.executable
TOOLS = osp.join(REPO, 'tools')
DET_CONFIG = 'mask_rcnn_convnext_t_1x'


def run(args: List[str], cwd: str = REPO, env: Dict[str, str] = None,
        timeout: int = 300) -> subprocess.CompletedProcess:
    """A tool in a subprocess on CPU (CUDA hidden), whatever the machine."""
    full_env = {**os.environ, 'CUDA_VISIBLE_DEVICES': '', **(env or {})}
    return subprocess.run(
        args,
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout)


@pytest.fixture(scope='module')
def tiny_det_config(tmp_path_factory) -> str:
    """The 1x Mask R-CNN config made tiny (no data paths: those are given on
    the command line), written as a stand-alone config file."""
    cfg = load(DET_CONFIG)
    cfg.merge_from_dict(tiny_options(cfg))
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    path = str(tmp_path_factory.mktemp('cfg') / 'tiny_mask_rcnn.py')
    cfg.dump(path)
    return path


def data_args(toy_root: str) -> List[str]:
    """toy_options as --cfg-options strings (data paths and classes)."""
    args = []
    for key, value in toy_options(load(DET_CONFIG), toy_root).items():
        if isinstance(value, dict):
            for sub, sub_value in value.items():
                args.append(f'{key}.{sub}={fmt(sub_value)}')
        else:
            args.append(f'{key}={fmt(value)}')
    return args


def fmt(value) -> str:
    if isinstance(value, (list, tuple)):
        return '[' + ','.join(str(v) for v in value) + ']'
    return str(value)


@pytest.fixture(scope='module')
def trained(tiny_det_config, toy_coco, tmp_path_factory) -> Dict[str, str]:
    work_dir = str(tmp_path_factory.mktemp('train'))
    proc = run([
        PYTHON, osp.join(TOOLS, 'train.py'), tiny_det_config, '--work-dir',
        work_dir, '--cfg-options', *data_args(toy_coco),
        'train_dataloader.batch_size=2', 'log_level=INFO'
    ])
    return dict(proc=proc, work_dir=work_dir)


# ---------------------------------------------------------------- tools
def test_train_tool(trained):
    proc, work_dir = trained['proc'], trained['work_dir']
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    # CUDA hidden: the config's AMP falls back to fp32, and says so
    assert 'no CUDA: AmpOptimWrapper -> OptimWrapper (fp32)' in out
    # 8 images, batch 2: 4 iterations, then validation
    assert re.search(r'Epoch\(train\) \[1\]\[4/4\]', out)
    assert 'coco/bbox_mAP' in out
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
    assert osp.isfile(osp.join(work_dir, 'tiny_mask_rcnn.py'))  # dumped cfg


def test_test_tool(trained, tiny_det_config, toy_coco, tmp_path):
    assert trained['proc'].returncode == 0
    ckpt = osp.join(trained['work_dir'], 'epoch_1.pth')
    show_dir = tmp_path / 'show'
    out_pkl = tmp_path / 'results.pkl'
    proc = run([
        PYTHON,
        osp.join(TOOLS, 'test.py'), tiny_det_config, ckpt, '--work-dir',
        str(tmp_path), '--show-dir',
        str(show_dir), '--out',
        str(out_pkl), '--cfg-options', *data_args(toy_coco)
    ])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(tmp_path / 'metrics.json') as f:
        metrics = json.load(f)
    assert {'coco/bbox_mAP', 'coco/segm_mAP'} <= set(metrics)
    assert all(isinstance(v, float) for v in metrics.values())
    assert sorted(os.listdir(show_dir)) == ['toy_000000.jpg', 'toy_000001.jpg']
    with open(out_pkl, 'rb') as f:
        assert len(pickle.load(f)) == 2  # one result per val image


def test_test_tool_on_a_deploy_bundle(trained, tiny_det_config, toy_coco,
                                      tmp_path):
    """tools/deploy.py's bundle of the trained checkpoint, tested by
    tools/test.py --bundle with the config's evaluator: the checkpoint's
    detections in --out, image by image, and its metrics."""
    pytest.importorskip('onnxruntime')
    assert trained['proc'].returncode == 0
    ckpt = osp.join(trained['work_dir'], 'epoch_1.pth')
    options = ['--cfg-options', *data_args(toy_coco), 'log_level=INFO']
    bundle = str(tmp_path / 'bundle')
    proc = run([PYTHON, osp.join(TOOLS, 'deploy.py'), tiny_det_config, ckpt,
                '--out-dir', bundle, '--repeat', '0', *options])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = {}
    for name, weights in (('ckpt', [ckpt]), ('bundle', ['--bundle', bundle])):
        proc = run([PYTHON, osp.join(TOOLS, 'test.py'), tiny_det_config,
                    *weights, '--work-dir', str(tmp_path / name), '--out',
                    str(tmp_path / f'{name}.pkl'), *options])
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        with open(tmp_path / name / 'metrics.json') as f:
            metrics[name] = json.load(f)
    assert 'testing the fp32 bundle' in proc.stdout + proc.stderr
    results = {}
    for name in metrics:
        with open(tmp_path / f'{name}.pkl', 'rb') as f:
            results[name] = pickle.load(f)
    assert len(results['bundle']) == len(results['ckpt']) == 2
    count = 0
    for got, ref in zip(results['bundle'], results['ckpt']):
        got, ref = got['pred_instances'], ref['pred_instances']
        assert got['labels'].tolist() == ref['labels'].tolist()
        assert torch.allclose(got['scores'], ref['scores'], atol=1e-3)
        assert torch.allclose(got['bboxes'], ref['bboxes'], atol=1e-2)
        assert [m['counts'] for m in got['masks']] == \
            [m['counts'] for m in ref['masks']]
        count += len(ref['labels'])
    assert count > 0  # detections to compare
    assert metrics['bundle'] == metrics['ckpt']


@pytest.mark.parametrize('args, expected', [
    ([], 'give a CHECKPOINT or --bundle DIR'),
    (['ckpt.pth', '--bundle', 'b'], 'give a CHECKPOINT or --bundle DIR'),
    (['--bundle', 'b', '--tta'], '--tta changes the PyTorch model'),
    (['--bundle', 'b', '--fast', 'exact'], '--fast changes'),
    (['--bundle', 'no_such_bundle'], "'no_such_bundle' is not a deploy "
     'bundle (no predict.py in it)'),
])
def test_test_tool_weights_arguments(args, expected):
    proc = run([PYTHON, osp.join(TOOLS, 'test.py'),
                osp.join(CONFIG_DIR, 'toy', 'mask_rcnn_convnext_atto_toy.py'),
                *args])
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith('error: ') and expected in lines[-1], \
        proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr


def test_test_tool_takes_a_zoo_layout_and_refuses_a_partial_one(
        trained, tiny_det_config, toy_coco, tmp_path):
    """The trained checkpoint re-saved as mmdet's / mmseg's zoo files are
    (mmpretrain's backbone names, torch's legacy format) gives the metrics
    of the run's own validation; with a stage of the backbone left out it
    stops before evaluating, naming a missing key."""
    assert trained['proc'].returncode == 0
    names = {'.dwconv.': '.depthwise_conv.', '.pwconv1.': '.pointwise_conv1.',
             '.pwconv2.': '.pointwise_conv2.'}
    checkpoint = torch.load(osp.join(trained['work_dir'], 'epoch_1.pth'),
                            weights_only=True)
    state = {}
    for key, value in checkpoint['state_dict'].items():
        for ours, theirs in names.items():
            key = key.replace(ours, theirs)
        state[key] = value
    zoo = str(tmp_path / 'zoo.pth')
    torch.save({'state_dict': state, 'meta': checkpoint['meta']}, zoo,
               _use_new_zipfile_serialization=False)
    proc = run([PYTHON, osp.join(TOOLS, 'test.py'), tiny_det_config, zoo,
                '--work-dir', str(tmp_path), '--cfg-options',
                *data_args(toy_coco), 'log_level=INFO'])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'from the mmpretrain layout' in proc.stdout + proc.stderr
    with open(tmp_path / 'metrics.json') as f:
        metrics = json.load(f)
    logged = re.search(r'coco/bbox_mAP: ([0-9.]+)',
                       trained['proc'].stdout + trained['proc'].stderr)
    assert metrics['coco/bbox_mAP'] == pytest.approx(float(logged.group(1)),
                                                     abs=1e-3)
    partial = str(tmp_path / 'partial.pth')
    torch.save({'state_dict': {k: v for k, v in state.items()
                               if not k.startswith('backbone.stages.3.')}},
               partial)
    os.remove(tmp_path / 'metrics.json')
    proc = run([PYTHON, osp.join(TOOLS, 'test.py'), tiny_det_config, partial,
                '--work-dir', str(tmp_path), '--cfg-options',
                *data_args(toy_coco)])
    assert proc.returncode == 1
    assert re.search(r"error: checkpoint .*partial.pth' does not fit config "
                     r".*'backbone\.stages\.3\.0\.\w+\.?\w*' and \d+ more "
                     'would stay random', proc.stderr), proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr
    assert not osp.exists(tmp_path / 'metrics.json')


def test_missing_dataset_stops_before_the_model(tmp_path):
    """From a directory without data/coco: a clear message, no work dir."""
    proc = run([
        PYTHON,
        osp.join(TOOLS, 'train.py'),
        osp.join(CONFIG_DIR, 'mask_rcnn_convnext_t.py'), '--work-dir',
        str(tmp_path / 'wd')
    ],
               cwd=str(tmp_path))
    assert proc.returncode != 0
    err = proc.stderr
    assert 'Traceback' not in err
    assert osp.join(str(tmp_path), 'data', 'coco', 'annotations',
                    'instances_train2017.json') in err
    assert 'data/coco/' in err  # where it is expected
    assert '--cfg-options train_dataloader.dataset.data_root=' in err
    assert 'val_evaluator.ann_file=' in err
    assert not osp.exists(tmp_path / 'wd')


def test_missing_config_names_the_path_and_close_configs():
    typo = osp.join(CONFIG_DIR, 'mask_rcnn_convnext_tt.py')
    for tool in ('train.py', 'test.py'):
        extra = [] if tool == 'train.py' else ['ckpt.pth']
        proc = run([PYTHON, osp.join(TOOLS, tool), typo] + extra)
        assert proc.returncode != 0
        assert 'Traceback' not in proc.stderr
        assert f"config file {typo!r} does not exist" in proc.stderr
        assert repr(osp.join(CONFIG_DIR, 'mask_rcnn_convnext_t.py')) in (
            proc.stderr)


def test_unknown_cfg_option_key(tmp_path):
    proc = run([
        PYTHON,
        osp.join(TOOLS, 'train.py'),
        osp.join(CONFIG_DIR, 'upernet_convnext_t_512.py'), '--cfg-options',
        'train_dataloder.batch_size=4'
    ],
               cwd=str(tmp_path))
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stderr
    assert "'train_dataloder.batch_size'" in proc.stderr
    assert "did you mean 'train_dataloader'" in proc.stderr


def test_get_flops_prints_a_row():
    proc = run([
        PYTHON,
        osp.join(TOOLS, 'analysis', 'get_flops.py'),
        osp.join(CONFIG_DIR, 'mask_rcnn_convnext_t.py'), '--shape', '320',
        '--header'
    ])
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = proc.stdout.strip().splitlines()[-1]
    name, shape, params, flops = [c.strip() for c in row.strip('|').split('|')]
    assert (name, shape) == ('mask_rcnn_convnext_t', '(320, 320)')
    assert abs(float(params) - 48.1) < 0.1  # the paper: 48M
    assert 0 < float(flops) < 262  # 262G at (1280, 800)


# ------------------------------------------------------------- in-process
def test_merge_cfg_options_rule():
    cfg = load('upernet_convnext_t_512')
    # new entries below an existing top-level key, and Runner options, pass
    merge_cfg_options(
        cfg, {
            'model.decode_head.new_arg': 1,
            'randomness.seed': 0,
            'find_unused_parameters': True
        })
    assert cfg.model.decode_head.new_arg == 1 and cfg.randomness.seed == 0
    with pytest.raises(UnknownConfigKeyError) as err:
        merge_cfg_options(cfg, {'modle.backbone.arch': 'small', 'lr': 1})
    message = str(err.value)
    assert "'modle.backbone.arch'" in message and "'model'" in message
    assert "'lr'" in message and 'no similar key' in message
    assert cfg.model.backbone.arch == 'tiny'  # nothing merged


@pytest.mark.parametrize('distributed,cuda', [(False, False), (True, False),
                                              (False, True), (True, True)])
def test_adapt_to_device(distributed, cuda):
    cfg = load('cascade_mask_rcnn_convnext_t')
    changes = adapt_to_device(cfg, distributed=distributed, cuda=cuda)
    text = str(cfg.model.to_dict())
    # SyncBN stays only where it can sync: several processes on GPUs
    assert ("'SyncBN'" in text) == (distributed and cuda)
    assert cfg.optim_wrapper.type == ('AmpOptimWrapper'
                                      if cuda else 'OptimWrapper')
    assert ('loss_scale' in cfg.optim_wrapper) == cuda
    assert cfg.env_cfg.dist_cfg.backend == ('nccl' if cuda else 'gloo')
    if distributed and not cuda:
        assert cfg.model_wrapper_cfg.device_ids is None
    else:
        assert 'model_wrapper_cfg' not in cfg
    assert len(changes) == len(set(changes))
    assert not (distributed and cuda) or changes == []


def saved_checkpoint(tmp_path) -> str:
    path = str(tmp_path / 'ckpt.pth')
    torch.save({'state_dict': {}}, path)
    return path


def test_train_options(tmp_path):
    cfg = load('cascade_mask_rcnn_convnext_l_in22k')
    prepared = prepare_train_cfg(
        cfg,
        work_dir='wd',
        amp=True,
        resume='auto',
        auto_scale_lr=True,
        check_data=False)
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # input untouched
    assert prepared.auto_scale_lr.enable is True
    assert (prepared.resume, prepared.load_from) == (True, None)
    if torch.cuda.is_available():
        assert prepared.optim_wrapper.type == 'AmpOptimWrapper'
    ckpt = saved_checkpoint(tmp_path)
    prepared = prepare_train_cfg(cfg, resume=ckpt, check_data=False)
    assert (prepared.resume, prepared.load_from) == (True, ckpt)
    assert prepared.work_dir == osp.join('./work_dirs',
                                         'cascade_mask_rcnn_convnext_l_in22k')


def test_tta_needs_the_config_to_define_it(tmp_path):
    with pytest.raises(ConfigPrepareError, match='DetTTAModel'):
        prepare_test_cfg(
            load(DET_CONFIG), saved_checkpoint(tmp_path), tta=True,
            check_data=False)


def test_check_dataset_paths_names_each_missing_path(tmp_path):
    cfg = load('upernet_convnext_t_512')
    root = tmp_path / 'ade'
    (root / 'images' / 'validation').mkdir(parents=True)
    cfg.merge_from_dict({'test_dataloader.dataset.data_root': str(root)})
    with pytest.raises(DatasetNotFoundError) as err:
        check_dataset_paths(cfg, ['test'])
    message = str(err.value)
    assert str(root / 'annotations' / 'validation') in message
    assert str(root / 'images' / 'validation') + '\n' not in message
    assert 'ADE20K' in message
    assert '--cfg-options test_dataloader.dataset.data_root=' in message


@pytest.mark.parametrize('model, key', [
    # the first of a list of necks reads the backbone, the next the first
    (dict(neck=[dict(in_channels=[96, 192]), dict(in_channels=[1])]),
     'model.neck.0.in_channels=[96, 192]'),
    # no neck: every *head (mmpose's head), entries of a list one by one
    (dict(head=dict(in_channels=2048)), 'model.head.in_channels=2048'),
    (dict(decode_head=[dict(in_channels=768),
                       dict(in_channels=2048, in_index=2)]),
     'model.decode_head.1.in_channels=2048'),
])
def test_channel_check_reads_the_consumers_swap_backbone_rewrites(model,
                                                                  key):
    cfg = Config(dict(model=dict(backbone=dict(type='ConvNeXt'), **model)))
    with pytest.raises(ConfigPrepareError, match=re.escape(key)):
        check_backbone_channels(cfg)


def test_channel_check_skips_what_does_not_read_our_backbone():
    # with a neck the heads read the neck
    check_backbone_channels(Config(dict(model=dict(
        backbone=dict(type='mmengine.ConvNeXtV2', arch='atto'),
        neck=dict(in_channels=[40, 80, 160, 320]),
        rpn_head=dict(in_channels=256)))))
    # mmpretrain's ConvNeXt is not this package's
    check_backbone_channels(Config(dict(model=dict(
        backbone=dict(type='mmpretrain.ConvNeXt'),
        head=dict(in_channels=2048)))))


def test_seg_test_options_tta_show_out(toy_ade, tmp_path):
    """UperNet (micro) trained one iteration, then tested with --tta,
    --show-dir and --out through the test path of tools/test.py."""
    cfg = load('upernet_convnext_t_512')
    options = {**toy_options(cfg, toy_ade), **tiny_options(cfg),
               'val_dataloader.dataset.indices': 1,
               'test_dataloader.dataset.indices': 1}
    # save the one-iteration model for the test below
    options['default_hooks.checkpoint'] = dict(
        type='CheckpointHook', by_epoch=False, interval=1)
    with torch.backends.mkldnn.flags(enabled=False):  # see test_configs
        train_cfg = prepare_train_cfg(
            cfg, work_dir=str(tmp_path / 'train'), cfg_options=options)
        build_runner(train_cfg).train()
        ckpt = str(tmp_path / 'train' / 'iter_1.pth')
        test_cfg = prepare_test_cfg(
            cfg,
            ckpt,
            work_dir=str(tmp_path / 'test'),
            show_dir=str(tmp_path / 'show'),
            out=str(tmp_path / 'pred'),
            tta=True,
            cfg_options=options)
        assert test_cfg.model.type == 'SegTTAModel'
        metrics = build_runner(test_cfg).test()
    assert 'mIoU' in metrics
    assert glob.glob(str(tmp_path / 'show' / '**' / '*.png'), recursive=True)
    assert glob.glob(str(tmp_path / 'pred' / '*.png'))


def test_each_runner_draws_with_its_own_visualizer(toy_coco, toy_ade,
                                                  tmp_path):
    """Runners built one after another in one process (tools/demo.py, these
    tests) each get a visualizer of their own config's class, although the
    mmdet and mmseg configs all name theirs 'visualizer' (a detector that
    drew with an earlier SegLocalVisualizer failed in CI)."""
    from mmengine.visualization import Visualizer
    built = []
    for name, root in (('toy/upernet_convnext_atto_toy', toy_ade),
                       ('toy/mask_rcnn_convnext_atto_toy', toy_coco),
                       ('toy/upernet_convnext_atto_toy', toy_ade),
                       ('toy/mask_rcnn_convnext_atto_toy', toy_coco)):
        cfg = load(name)
        assert cfg.visualizer.name == 'visualizer'
        cfg = prepare_train_cfg(cfg, work_dir=str(tmp_path / str(len(built))),
                                cfg_options=toy_options(cfg, root))
        runner = build_runner(cfg)
        current = Visualizer.get_current_instance()
        assert current is runner.visualizer
        assert type(current).__name__ == cfg.visualizer.type
        assert current not in built
        built.append(current)


@pytest.mark.parametrize('cuda', [True, False])
def test_amp_option_with_and_without_cuda(cuda, monkeypatch):
    """--amp on an fp32 paper config (L, IN-22K): AmpOptimWrapper with a
    dynamic loss scale where CUDA is (faked here: nothing runs), and on CPU
    the fp32 OptimWrapper with one logged line saying so."""
    logged = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda)
    monkeypatch.setattr(device, 'log_once',
                        lambda message, level=None: logged.append(message))
    cfg = load('cascade_mask_rcnn_convnext_l_in22k')
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # the paper: fp32
    prepared = prepare_train_cfg(cfg, amp=True, check_data=False)
    if cuda:
        assert prepared.optim_wrapper.type == 'AmpOptimWrapper'
        assert prepared.optim_wrapper.loss_scale == 'dynamic'
        assert prepared.env_cfg.dist_cfg.backend == 'nccl'
        assert not [m for m in logged if 'no CUDA' in m], logged
    else:
        assert prepared.optim_wrapper.type == 'OptimWrapper'
        assert 'loss_scale' not in prepared.optim_wrapper
        assert logged[0] == 'no CUDA: AmpOptimWrapper -> OptimWrapper (fp32)'
        assert 'no CUDA: env_cfg.dist_cfg.backend nccl -> gloo' in logged


@pytest.mark.parametrize('processes, gpus, ok', [
    ('2', 2, True), ('1', 4, True), ('2', 0, True), ('4', 1, False),
    (None, 1, True)])
def test_cuda_processes_must_fit_the_gpus(processes, gpus, ok):
    environ = {} if processes is None else {'LOCAL_WORLD_SIZE': processes}
    if ok:
        check_cuda_processes(environ, num_gpus=gpus)
        return
    environ['CUDA_VISIBLE_DEVICES'] = '0'
    with pytest.raises(ConfigPrepareError) as err:
        check_cuda_processes(environ, num_gpus=gpus)
    message = str(err.value)
    assert '4 processes' in message and '1 GPU(s)' in message
    assert 'CUDA_VISIBLE_DEVICES=0' in message
    assert 'tools/dist_train.sh CONFIG 1' in message


@pytest.mark.parametrize('script, args, expected', [
    ('dist_train.sh', ['cfg.py', '2', '--amp'],
     ['-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0',
      '--master_addr=127.0.0.1', '--nproc_per_node=2', '--master_port=29500',
      f'{TOOLS}/train.py', 'cfg.py', '--amp', '--launcher', 'pytorch']),
    ('dist_test.sh', ['cfg.py', 'ck.pth', '2', '--out', 'p.pkl'],
     ['-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0',
      '--master_addr=127.0.0.1', '--nproc_per_node=2', '--master_port=29500',
      f'{TOOLS}/test.py', 'cfg.py', 'ck.pth', '--out', 'p.pkl',
      '--launcher', 'pytorch']),
    ('slurm_train.sh', ['part', 'job', 'cfg.py', 'wd', '--amp'],
     ['srun', '-p', 'part', '--job-name=job', '--gres=gpu:4', '--ntasks=8',
      '--ntasks-per-node=4', '--cpus-per-task=5', '--kill-on-bad-exit=1',
      '--exclusive', 'fakepython', '-u', f'{TOOLS}/train.py', 'cfg.py',
      '--work-dir=wd', '--amp', '--launcher=slurm']),
    ('slurm_test.sh', ['part', 'job', 'cfg.py', 'ck.pth', '--tta'],
     ['srun', '-p', 'part', '--job-name=job', '--gres=gpu:4', '--ntasks=8',
      '--ntasks-per-node=4', '--cpus-per-task=5', '--kill-on-bad-exit=1',
      '--exclusive', 'fakepython', '-u', f'{TOOLS}/test.py', 'cfg.py',
      'ck.pth', '--tta', '--launcher=slurm']),
])
def test_launch_scripts_run_the_tool_with_its_arguments(
        script, args, expected, tmp_path):
    """The four launch scripts share tools/lib/torchrun.sh and srun.sh:
    the command each runs, seen through a fake srun and python that print
    their arguments."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name in ('srun', 'fakepython'):
        fake = bin_dir / name
        fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
        fake.chmod(0o755)
    env = {'PATH': f'{bin_dir}:{os.environ["PATH"]}', 'PYTHON': 'fakepython',
           'GPUS': '8', 'GPUS_PER_NODE': '4', 'SRUN_ARGS': '--exclusive'}
    result = run(['bash', osp.join(TOOLS, script), *args], env=env)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    if script.startswith('slurm'):
        printed = ['srun'] + printed
    assert printed == expected
