"""Turn a config plus command-line choices into a ready mmengine Runner.

``tools/train.py`` and ``tools/test.py`` (and the tests) go through the same
functions, for mmdet and mmseg configs alike (the config's ``default_scope``
decides):

- :func:`merge_cfg_options` merges ``--cfg-options`` and refuses keys whose
  top-level name is unknown (mmengine would silently add them);
- :func:`adapt_to_device` makes the paper's GPU configs run unchanged where
  there is no CUDA or only one process;
- :func:`check_dataset_paths` fails early, before any model is built, with
  the missing path and how to point the config elsewhere;
- :func:`check_backbone_channels` checks neck / decode-head ``in_channels``
  against the ConvNeXt's outputs;
- :func:`find_resume_checkpoint` / :func:`checkpoint_problem` pick the
  newest readable checkpoint for ``--resume`` and name damaged files;
- :func:`prepare_train_cfg` / :func:`prepare_test_cfg` apply the tools'
  options in mmdet's / mmseg's way and call the three above;
- :func:`build_runner` builds mmengine's Runner (starting gloo itself for a
  CPU-only ``torchrun``, which mmengine 0.10.7 cannot);
- :func:`dump_metrics` writes the test metrics to a json file.
"""
import copy
import datetime
import difflib
import importlib
import inspect
import json
import logging
import numbers
import os
import os.path as osp
import zipfile
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.runner import Runner

__all__ = [
    'ConfigPrepareError', 'DatasetNotFoundError', 'UnknownConfigKeyError',
    'adapt_to_device', 'build_runner', 'check_backbone_channels',
    'check_dataset_paths', 'checkpoint_problem', 'find_resume_checkpoint',
    'dump_metrics', 'merge_cfg_options', 'prepare_test_cfg',
    'prepare_train_cfg'
]

#: Top-level keys mmengine's Runner (0.10.x) and the tools read although a
#: config may lack them; ``--cfg-options`` may add these.
RUNNER_KEYS = frozenset(
    set(inspect.signature(Runner.__init__).parameters) - {'self', 'cfg'}
    | {
        'activation_checkpointing', 'compile', 'custom_imports',
        'efficient_conv_bn_eval', 'find_unused_parameters',
        'model_wrapper_cfg', 'runner_type', 'sync_bn', 'tta_model',
        'tta_pipeline'
    })

#: Where each dataset type expects its files, for the missing-data error.
DATASET_LAYOUTS = {
    'CocoDataset':
    'COCO 2017: <data_root>/annotations/instances_{train,val}2017.json, '
    '<data_root>/train2017/, <data_root>/val2017/ (default data_root: '
    'data/coco/)',
    'ADE20KDataset':
    'ADE20K: <data_root>/images/{training,validation}/ and '
    '<data_root>/annotations/{training,validation}/ (default data_root: '
    'data/ade/ADEChallengeData2016)',
}

_SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN')


class ConfigPrepareError(Exception):
    """A config cannot run as asked; the message says why and what to do."""


class UnknownConfigKeyError(ConfigPrepareError, KeyError):
    """A ``--cfg-options`` key names nothing in the config."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class DatasetNotFoundError(ConfigPrepareError, FileNotFoundError):
    """A dataset file or directory of the config does not exist."""


def _log_once(message: str, level: int = logging.WARNING) -> None:
    """Log on the first process only: every process makes the same change."""
    rank = os.environ.get('RANK', os.environ.get('SLURM_PROCID', '0'))
    if rank == '0':
        print_log(message, logger='current', level=level)


# --------------------------------------------------------------- cfg-options
def merge_cfg_options(cfg: Config, options: Optional[Dict[str, Any]]) -> None:
    """Merge ``--cfg-options`` into ``cfg`` after checking their keys.

    The rule: the first part of every key (``train_dataloader`` of
    ``train_dataloader.dataset.data_root``) must be a top-level key of the
    config or one that mmengine's Runner reads (:data:`RUNNER_KEYS`, e.g.
    ``randomness`` or ``find_unused_parameters``). Deeper parts are not
    checked, because new entries in existing dicts are legitimate (a new
    argument of a head, ``metainfo`` of a dataset).

    Args:
        cfg (Config): Changed in place.
        options (dict, optional): ``{dotted.key: value}`` as parsed by
            mmengine's ``DictAction``.

    Raises:
        UnknownConfigKeyError: Names each unknown key and the closest
            existing ones.
    """
    if not options:
        return
    known = set(cfg.keys()) | RUNNER_KEYS
    problems = []
    for key in options:
        top = key.split('.')[0]
        if top in known:
            continue
        close = difflib.get_close_matches(top, sorted(known), n=3, cutoff=0.6)
        hint = (f"did you mean {' or '.join(repr(c) for c in close)}?"
                if close else 'no similar key exists')
        problems.append(f"  '{key}': the config has no key '{top}'; {hint}")
    if problems:
        raise UnknownConfigKeyError(
            '--cfg-options names keys that are not in the config:\n' +
            '\n'.join(problems) + '\nOnly existing top-level keys (see the '
            'dumped config in the work dir) and the Runner\'s own options '
            f"({', '.join(sorted(RUNNER_KEYS - set(cfg.keys())))}) can be "
            'set; fix the spelling.')
    cfg.merge_from_dict(options)


# ----------------------------------------------------------- device fallback
def iter_dicts(node: Any) -> Iterator[dict]:
    """Every dict in a nested config value, depth first, parents first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from iter_dicts(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from iter_dicts(value)


def adapt_to_device(cfg: Config,
                    *,
                    distributed: bool,
                    train: bool = True,
                    cuda: Optional[bool] = None) -> List[str]:
    """Make a GPU config run here, changing only what cannot run as it is.

    - no CUDA: ``AmpOptimWrapper`` -> ``OptimWrapper`` (fp32; mmengine's AMP
      wrapper needs a GPU), ``env_cfg.dist_cfg.backend`` nccl -> gloo, and
      for several processes DDP without ``device_ids`` (torch refuses them
      for CPU modules).
    - SyncBN -> BN in the model in a single process (nothing to sync with;
      mmengine would revert the built layers anyway) and on CPU for several
      processes too: torch 2.x ``SyncBatchNorm`` raises "expected input
      tensor to be on GPU" for CPU tensors once a process group exists, so
      there each process keeps its own batch statistics. Several processes
      with CUDA keep SyncBN.

    Each change is logged once, in one line.

    Args:
        cfg (Config): Changed in place.
        distributed (bool): Whether several processes run (launcher is not
            ``'none'``).
        train (bool): Whether the config is for training (else the
            optimizer wrapper is left alone: testing does not build it).
            Defaults to True.
        cuda (bool, optional): Whether CUDA is usable. Defaults to
            ``torch.cuda.is_available()``.

    Returns:
        list[str]: The logged changes.
    """
    if cuda is None:
        cuda = torch.cuda.is_available()
    changes = []
    optim_wrapper = cfg.get('optim_wrapper')
    if (train and not cuda and isinstance(optim_wrapper, dict)
            and optim_wrapper.get('type') == 'AmpOptimWrapper'):
        optim_wrapper['type'] = 'OptimWrapper'
        for key in ('loss_scale', 'dtype', 'use_fsdp'):
            optim_wrapper.pop(key, None)
        changes.append('no CUDA: AmpOptimWrapper -> OptimWrapper (fp32)')
    dist_cfg = cfg.get('env_cfg', {}).get('dist_cfg')
    if not cuda and isinstance(dist_cfg,
                               dict) and dist_cfg.get('backend') == 'nccl':
        dist_cfg['backend'] = 'gloo'
        changes.append('no CUDA: env_cfg.dist_cfg.backend nccl -> gloo')
    if not cuda and distributed:
        wrapper = cfg.get('model_wrapper_cfg') or dict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
        if wrapper.get('device_ids', 'unset') is not None:
            wrapper['device_ids'] = None
            cfg.model_wrapper_cfg = wrapper
            changes.append('no CUDA: model_wrapper_cfg.device_ids -> None '
                           '(DDP of a CPU model)')
    if not distributed or not cuda:
        norms = [
            d for d in iter_dicts(cfg.get('model', {}))
            if d.get('type') in _SYNC_BN_TYPES
        ]
        for norm in norms:
            norm['type'] = 'BN'
        if norms:
            why = ('single process' if not distributed else
                   "no CUDA (torch's SyncBatchNorm needs GPU tensors)")
            changes.append(f'{why}: SyncBN -> BN in the model '
                           f'({len(norms)} norm_cfg)')
    for change in changes:
        _log_once(change)
    return changes


# -------------------------------------------------------------- data checks
def _dataset_cfgs(dataset: Any, where: str) -> Iterator[Tuple[dict, str]]:
    """The leaf dataset configs below wrappers (Repeat/Concat/...)."""
    if not isinstance(dataset, dict):
        return
    if isinstance(dataset.get('dataset'), dict):
        yield from _dataset_cfgs(dataset['dataset'], f'{where}.dataset')
    elif isinstance(dataset.get('datasets'), (list, tuple)):
        for i, sub in enumerate(dataset['datasets']):
            yield from _dataset_cfgs(sub, f'{where}.datasets.{i}')
    else:
        yield dataset, where


def _is_local(path: Any) -> bool:
    return isinstance(path, str) and bool(path) and '://' not in path


def _evaluator_ann_files(evaluator: Any,
                         where: str) -> Iterator[Tuple[str, str]]:
    is_list = isinstance(evaluator, (list, tuple))
    metrics = evaluator if is_list else [evaluator]
    for i, metric in enumerate(metrics):
        if isinstance(metric, dict) and _is_local(metric.get('ann_file')):
            key = f'{where}.{i}' if is_list else where
            yield metric['ann_file'], f'{key}.ann_file'


def check_dataset_paths(cfg: Config, phases: Sequence[str]) -> None:
    """Check that the files and folders the datasets will read exist.

    Args:
        cfg (Config): The prepared config.
        phases (Sequence[str]): Any of ``'train'``, ``'val'``, ``'test'``:
            ``<phase>_dataloader`` (``data_root`` joined with ``ann_file``
            and every ``data_prefix`` entry) and ``<phase>_evaluator``
            (``ann_file``) are checked. Remote paths (``s3://...``) and
            datasets with ``backend_args`` are not.

    Raises:
        DatasetNotFoundError: Lists every missing path, where the data is
            expected and the ``--cfg-options`` that point elsewhere.
    """
    missing, loaders, evaluators, types, roots = [], [], [], [], []
    for phase in phases:
        loader = cfg.get(f'{phase}_dataloader')
        if not isinstance(loader, dict):
            continue
        loaders.append(f'{phase}_dataloader')
        for dataset, where in _dataset_cfgs(
                loader.get('dataset'), f'{phase}_dataloader.dataset'):
            if dataset.get('backend_args'):
                continue
            types.append(dataset.get('type'))
            root = dataset.get('data_root') or ''
            roots.append(root)
            if root and not _is_local(root):
                continue
            entries = []
            if _is_local(dataset.get('ann_file')):
                entries.append((f'{where}.ann_file', dataset['ann_file']))
            for key, value in (dataset.get('data_prefix') or {}).items():
                if _is_local(value):
                    entries.append((f'{where}.data_prefix.{key}', value))
            for key, value in entries:
                path = osp.join(root, value)
                if not osp.exists(path):
                    missing.append(f'  {osp.abspath(path)}\n    ({key}='
                                   f"'{value}' under data_root='{root}')")
        evaluator = cfg.get(f'{phase}_evaluator')
        for ann_file, key in _evaluator_ann_files(evaluator,
                                                  f'{phase}_evaluator'):
            evaluators.append((key, ann_file))
            if not osp.exists(ann_file):
                missing.append(f"  {osp.abspath(ann_file)}\n    ({key})")
    if not missing:
        return
    layouts = [DATASET_LAYOUTS[t] for t in dict.fromkeys(types)
               if t in DATASET_LAYOUTS]
    expected = ('Expected layout: ' + '; '.join(layouts) +
                '.\n') if layouts else ''
    new_ann_files = []
    for key, ann_file in evaluators:
        # the metric's own copy of a path below data_root
        root = next((r for r in roots if r and ann_file.startswith(r)), None)
        rest = (ann_file[len(root):].lstrip('/')
                if root else osp.basename(ann_file))
        new_ann_files.append(f'{key}=/path/to/data/{rest}')
    options = ' '.join(
        [f'{name}.dataset.data_root=/path/to/data'
         for name in loaders] + new_ann_files)
    raise DatasetNotFoundError(
        'dataset not found; these paths do not exist (relative ones are '
        f'relative to {os.getcwd()}):\n' + '\n'.join(missing) + '\n' +
        expected + 'Put (or symlink) the data there, or point the config '
        f'at it:\n  --cfg-options {options}')


# ------------------------------------------------------------------ prepare
# ------------------------------------------------------ model consistency
def _heads_in_channels(model: dict) -> Iterator[Tuple[str, Any, Any]]:
    """(config key, in_channels, in_index) of every module fed by the
    backbone: an mmdet neck, mmseg decode / auxiliary heads."""
    neck = model.get('neck')
    if isinstance(neck, dict) and 'in_channels' in neck:
        yield 'model.neck.in_channels', neck['in_channels'], None
    for name in ('decode_head', 'auxiliary_head'):
        heads = model.get(name)
        many = isinstance(heads, (list, tuple))
        for i, head in enumerate(heads if many else [heads]):
            if isinstance(head, dict) and 'in_channels' in head:
                key = f'model.{name}' + (f'[{i}]' if many else '')
                yield (f'{key}.in_channels', head['in_channels'],
                       head.get('in_index', -1))


def check_backbone_channels(cfg: Config) -> None:
    """A neck / decode head must take the channels the ConvNeXt gives.

    Without this check a mismatch surfaces as a convolution shape error deep
    in the first forward pass.

    Args:
        cfg (Config): A config whose ``model.backbone`` may be ConvNeXt
            (other backbones are not checked).

    Raises:
        ConfigPrepareError: Names the key, both channel lists and the fix.
    """
    from .presets import normalize_out_indices, out_channels
    model = cfg.get('model')
    backbone = model.get('backbone') if isinstance(model, dict) else None
    if not isinstance(backbone, dict) or backbone.get('type') not in (
            'ConvNeXt', 'mmengine.ConvNeXt'):
        return
    arch = backbone.get('arch', 'tiny')
    indices = normalize_out_indices(backbone.get('out_indices', (0, 1, 2, 3)))
    out = out_channels(arch, indices)
    for key, in_channels, in_index in _heads_in_channels(model):
        if in_index is None:  # a neck takes every output, in order
            expected = out
        elif isinstance(in_index, (list, tuple)):
            expected = [out[i] for i in in_index]
        else:
            expected = out[in_index]
        got = list(in_channels) if isinstance(in_channels,
                                              (list, tuple)) else in_channels
        if got != expected:
            raise ConfigPrepareError(
                f'{key}={got} does not match the backbone: '
                f'ConvNeXt(arch={arch!r}, out_indices={tuple(indices)}) '
                f'gives {out}; set {key}={expected} (derive it from '
                'convnext_backbone.presets.out_channels(arch, out_indices))')


# ------------------------------------------------------------------ resume
def checkpoint_problem(path: str) -> Optional[str]:
    """Why a checkpoint file cannot be resumed from, or None if it can.

    Reads the whole file but unpickles nothing: torch's zip container is
    checked for a complete central directory and correct CRCs, which catches
    files truncated by a killed job or corrupted on disk.
    """
    if not osp.isfile(path):
        return 'the file does not exist'
    if not zipfile.is_zipfile(path):
        return ('not a complete torch checkpoint (truncated, or not written '
                'by torch.save)')
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f'unreadable ({err})'
    if bad is not None:
        return f'corrupted (CRC mismatch in {bad})'
    return None


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The newest readable checkpoint of a work dir, for ``--resume``.

    Candidates are the one named in ``last_checkpoint`` (mmengine's record)
    followed by every ``*.pth`` of the work dir, newest first. Damaged ones
    are skipped with a warning naming them.

    Args:
        work_dir (str): The run's work dir.

    Returns:
        str | None: A checkpoint path; None when the work dir has none (the
        run then starts from scratch, as mmengine does).

    Raises:
        ConfigPrepareError: There are checkpoints but none is readable.
    """
    candidates = []
    record = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(record):
        with open(record) as f:
            candidates.append(f.read().strip())
    found = sorted(
        (osp.join(work_dir, name) for name in os.listdir(work_dir)
         if name.endswith('.pth')) if osp.isdir(work_dir) else [],
        key=lambda path: (osp.getmtime(path), path), reverse=True)
    candidates += [p for p in found if p not in candidates]
    skipped = []
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            if skipped:
                _log_once('--resume: skipped ' + '; '.join(skipped) +
                          f'; resuming from {path}')
            return path
        skipped.append(f'{path} ({problem})')
    if skipped:
        raise ConfigPrepareError(
            f'--resume: no readable checkpoint in {work_dir}: ' +
            '; '.join(skipped) + '. Remove the damaged files to start '
            'from scratch, or resume from a copy with --resume <path>')
    _log_once(f'--resume: no checkpoint in {work_dir}; training starts from '
              'scratch', logging.INFO)
    return None


def _scope(cfg: Config) -> str:
    scope = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmseg'):
        raise ConfigPrepareError(
            f"default_scope={scope!r}: the tools run mmdet ('mmdet') and "
            "mmsegmentation ('mmseg') configs; set default_scope in the "
            'config')
    return scope


def build_model_without_weights(cfg: Config) -> torch.nn.Module:
    """The config's model, built in its scope (mmdet or mmseg) on CPU with
    SyncBN as BN and the backbone's ``init_cfg`` dropped, so nothing is
    downloaded (the analysis tools need shapes and speed, not weights).

    Raises:
        ConfigPrepareError: ``default_scope`` is neither mmdet nor mmseg.
    """
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    scope = _scope(cfg)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None
    init_default_scope(scope)
    models = importlib.import_module(f'{scope}.registry').MODELS
    return revert_sync_batchnorm(models.build(model_cfg))


def _prepare_common(cfg: Config, *, launcher: str, work_dir: Optional[str],
                    cfg_options: Optional[Dict[str, Any]]) -> Config:
    cfg = copy.deepcopy(cfg)
    merge_cfg_options(cfg, cfg_options)
    _scope(cfg)
    check_backbone_channels(cfg)
    if launcher not in ('none', 'pytorch', 'slurm', 'mpi'):
        raise ConfigPrepareError(
            f"launcher={launcher!r}; choose one of: none, pytorch, slurm, "
            'mpi')
    cfg.launcher = launcher
    # work_dir: argument > config > ./work_dirs/<config name>
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        name = osp.splitext(osp.basename(cfg.filename or 'config'))[0]
        cfg.work_dir = osp.join('./work_dirs', name)
    return cfg


def prepare_train_cfg(cfg: Config,
                      *,
                      launcher: str = 'none',
                      work_dir: Optional[str] = None,
                      amp: bool = False,
                      resume: Optional[str] = None,
                      auto_scale_lr: bool = False,
                      cfg_options: Optional[Dict[str, Any]] = None,
                      check_data: bool = True) -> Config:
    """The config ``tools/train.py`` runs.

    Args:
        cfg (Config): As loaded; not changed (a copy is returned).
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
            Defaults to 'none'.
        work_dir (str, optional): Overrides the config's; else
            ``./work_dirs/<config name>``. Defaults to None.
        amp (bool): Train with ``AmpOptimWrapper`` (dynamic loss scale).
            Defaults to False.
        resume (str, optional): ``'auto'`` (latest checkpoint of the work
            dir) or a checkpoint path. Defaults to None.
        auto_scale_lr (bool): Scale the lrs linearly by the actual total
            batch size over ``auto_scale_lr.base_batch_size`` (done by
            mmengine's Runner). Defaults to False.
        cfg_options (dict, optional): See :func:`merge_cfg_options`.
        check_data (bool): Run :func:`check_dataset_paths` for train and
            val. Defaults to True.

    Returns:
        Config: The prepared copy.
    """
    cfg = _prepare_common(
        cfg, launcher=launcher, work_dir=work_dir, cfg_options=cfg_options)
    if amp:
        wrapper = cfg.optim_wrapper
        if wrapper.get('type') == 'AmpOptimWrapper':
            _log_once('--amp: the config already trains with AmpOptimWrapper',
                      logging.INFO)
        elif wrapper.get('type', 'OptimWrapper') != 'OptimWrapper':
            raise ConfigPrepareError(
                f"--amp replaces OptimWrapper by AmpOptimWrapper, but "
                f"optim_wrapper.type={wrapper.get('type')!r}")
        else:
            wrapper.type = 'AmpOptimWrapper'
            wrapper.loss_scale = 'dynamic'
    if auto_scale_lr:
        scale_cfg = cfg.get('auto_scale_lr')
        if not isinstance(scale_cfg,
                          dict) or 'base_batch_size' not in scale_cfg:
            raise ConfigPrepareError(
                '--auto-scale-lr needs auto_scale_lr=dict(enable=False, '
                'base_batch_size=<total batch the lrs are for>) in the '
                f'config, got auto_scale_lr={scale_cfg!r}')
        scale_cfg['enable'] = True
    if resume == 'auto':
        cfg.resume = True
        cfg.load_from = find_resume_checkpoint(cfg.work_dir)
    elif resume is not None:
        problem = checkpoint_problem(resume)
        if problem:
            raise ConfigPrepareError(
                f'--resume {resume}: {problem}. Give another checkpoint, or '
                '--resume without a path to take the newest readable one of '
                'the work dir')
        cfg.resume = True
        cfg.load_from = resume
    adapt_to_device(cfg, distributed=launcher != 'none')
    if check_data:
        phases = ['train']
        if cfg.get('val_cfg') and cfg.get('val_dataloader'):
            phases.append('val')
        check_dataset_paths(cfg, phases)
    return cfg


def _enable_visualization(cfg: Config, scope: str, show_dir: str) -> None:
    """Draw test predictions into ``show_dir``, as mmdet's / mmseg's
    tools/test.py do (an absolute path, so mmdet does not put it below the
    run's timestamp folder)."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if not isinstance(hook, dict):
        raise ConfigPrepareError(
            '--show-dir needs default_hooks.visualization '
            "(DetVisualizationHook or SegVisualizationHook) in the config")
    hook['draw'] = True
    show_dir = osp.abspath(show_dir)
    if scope == 'mmdet':
        hook['test_out_dir'] = show_dir  # <show_dir>/<image name>
    else:
        hook['interval'] = 1  # every test image, as mmdet's hook does
        # <show_dir>/vis_data/vis_image/test_<image name>_<iter>.png
        cfg.visualizer['save_dir'] = show_dir
        # Visualizers are process-wide instances by name: a test after a
        # training in the same process (tools/demo.py) would otherwise get
        # the training's instance, which saves into the training's log dir.
        cfg.visualizer['name'] = f'visualizer:{show_dir}'


def _enable_tta(cfg: Config) -> None:
    """Wrap the model in ``tta_model`` and test with ``tta_pipeline``."""
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise ConfigPrepareError(
            '--tta needs tta_model and tta_pipeline in the config. The '
            'ADE20K configs get them from their _base_ files; the COCO ones '
            "have none: the paper tests COCO at one scale, and mmdet 3.3's "
            'DetTTAModel cannot merge masks')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)


def prepare_test_cfg(cfg: Config,
                     checkpoint: str,
                     *,
                     launcher: str = 'none',
                     work_dir: Optional[str] = None,
                     show_dir: Optional[str] = None,
                     out: Optional[str] = None,
                     tta: bool = False,
                     cfg_options: Optional[Dict[str, Any]] = None,
                     check_data: bool = True) -> Config:
    """The config ``tools/test.py`` runs.

    Args:
        cfg (Config): As loaded; not changed (a copy is returned).
        checkpoint (str): Weights to test (path or URL).
        launcher (str): See :func:`prepare_train_cfg`. Defaults to 'none'.
        work_dir (str, optional): See :func:`prepare_train_cfg`.
        show_dir (str, optional): Draw every prediction into this folder.
            Defaults to None.
        out (str, optional): mmdet: a ``.pkl`` file of all predictions
            (``DumpDetResults``); mmseg: a folder of predicted label PNGs
            (``IoUMetric(output_dir=...)``). Defaults to None.
        tta (bool): Test with the config's ``tta_model`` /
            ``tta_pipeline`` (ADE20K: ratios 0.5-1.75 with flip). Defaults
            to False.
        cfg_options (dict, optional): See :func:`merge_cfg_options`.
        check_data (bool): Run :func:`check_dataset_paths` for test.
            Defaults to True.

    Returns:
        Config: The prepared copy.
    """
    cfg = _prepare_common(
        cfg, launcher=launcher, work_dir=work_dir, cfg_options=cfg_options)
    scope = _scope(cfg)
    problem = checkpoint_problem(checkpoint) if _is_local(checkpoint) \
        else None
    if problem:
        raise ConfigPrepareError(f'checkpoint {checkpoint}: {problem}')
    cfg.load_from = checkpoint
    if show_dir is not None:
        _enable_visualization(cfg, scope, show_dir)
    if tta:
        _enable_tta(cfg)
    if out is not None:
        if scope == 'mmdet':
            if not out.endswith(('.pkl', '.pickle')):
                raise ConfigPrepareError(
                    f'--out {out!r}: mmdet predictions are dumped to a '
                    '.pkl file')
            evaluator = cfg.test_evaluator
            metrics = list(evaluator) if isinstance(evaluator,
                                                    (list, tuple)) else [
                                                        evaluator
                                                    ]
            cfg.test_evaluator = metrics + [
                dict(type='DumpDetResults', out_file_path=out)
            ]
        else:
            cfg.test_evaluator['output_dir'] = out
            cfg.test_evaluator['keep_results'] = True
    adapt_to_device(cfg, distributed=launcher != 'none', train=False)
    if check_data:
        check_dataset_paths(cfg, ['test'])
    return cfg


# -------------------------------------------------------------------- run
def _init_cpu_distributed(cfg: Config) -> None:
    """Start the process group for a CPU-only ``torchrun``.

    mmengine 0.10.7's ``init_dist`` calls ``torch.cuda.set_device`` first,
    which fails without CUDA; this is the same ``init_process_group`` call
    without it. The Runner then finds the group and does not start another.
    """
    if cfg.launcher != 'pytorch':
        raise ConfigPrepareError(
            f'--launcher {cfg.launcher} without CUDA: several CPU processes '
            'are supported with torchrun (tools/dist_train.sh, --launcher '
            'pytorch) only')
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    backend = dist_cfg.pop('backend', 'gloo')
    timeout = dist_cfg.pop('timeout', None)
    if timeout is not None:
        dist_cfg['timeout'] = datetime.timedelta(seconds=timeout)
    torch_dist.init_process_group(backend=backend, **dist_cfg)


def build_runner(cfg: Config) -> Runner:
    """mmengine's Runner for a prepared config (``runner_type`` honoured).

    Args:
        cfg (Config): From :func:`prepare_train_cfg` or
            :func:`prepare_test_cfg`.

    Returns:
        Runner: Ready for ``train()`` / ``test()``.
    """
    if (cfg.get('launcher', 'none') != 'none'
            and not torch.cuda.is_available()
            and not (torch_dist.is_available()
                     and torch_dist.is_initialized())):
        _init_cpu_distributed(cfg)
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def _to_builtin(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_builtin(v) for v in value]
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, 'tolist'):  # numpy arrays and scalars, tensors
        return _to_builtin(value.tolist())
    return str(value)


def dump_metrics(metrics: Dict[str, Any], path: str) -> None:
    """Write the metrics returned by ``runner.test()`` as json.

    Only the main process writes (every process holds the same metrics).

    Args:
        metrics (dict): E.g. ``{'coco/bbox_mAP': 0.42, ...}``.
        path (str): The json file, e.g. ``<work_dir>/metrics.json``.
    """
    from mmengine.dist import is_main_process
    if not is_main_process():
        return
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(_to_builtin(metrics), f, indent=2)
    _log_once(f'metrics written to {path}', logging.INFO)
