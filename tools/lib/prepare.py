"""Turning a config plus the tools' command-line options into the config
that runs, in mmdet's / mmseg's way: ``tools/train.py`` and
``tools/test.py`` (and the tests) call :func:`prepare_train_cfg` /
:func:`prepare_test_cfg`, for mmdet and mmseg configs alike (the config's
``default_scope`` decides)."""
import copy
import logging
import os.path as osp
from typing import Any, Dict, Optional, Tuple

from mmengine.config import Config, ConfigDict

from .cfg_options import merge_cfg_options
from .cfg_walk import config_scope
from .checks import (check_backbone_channels, check_dataset_paths,
                     is_local_path)
from .device import adapt_to_device
from .errors import ConfigPrepareError
from .log import log_once
from .resume import checkpoint_problem, find_resume_checkpoint

#: The launchers mmengine's Runner takes; ``--launcher`` offers these.
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def _prepare_common(cfg: Config, *, launcher: str, work_dir: Optional[str],
                    cfg_options: Optional[Dict[str, Any]]
                    ) -> Tuple[Config, str]:
    """The prepared copy's shared part, and the config's scope."""
    cfg = copy.deepcopy(cfg)
    merge_cfg_options(cfg, cfg_options)
    scope = config_scope(cfg)
    check_backbone_channels(cfg)
    if launcher not in LAUNCHERS:
        raise ConfigPrepareError(
            f"launcher={launcher!r}; choose one of: {', '.join(LAUNCHERS)}")
    cfg.launcher = launcher
    # work_dir: argument > config > ./work_dirs/<config name>
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        name = osp.splitext(osp.basename(cfg.filename or 'config'))[0]
        cfg.work_dir = osp.join('./work_dirs', name)
    return cfg, scope


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
    cfg, _ = _prepare_common(
        cfg, launcher=launcher, work_dir=work_dir, cfg_options=cfg_options)
    if amp:
        wrapper = cfg.optim_wrapper
        if wrapper.get('type') == 'AmpOptimWrapper':
            log_once('--amp: the config already trains with AmpOptimWrapper',
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
        # (build_runner gives the run its own visualizer instance, so this
        # save_dir is not that of an earlier run in the same process)
        cfg.visualizer['save_dir'] = show_dir


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


def check_fast_option(mode: str, device_type: str,
                      emulated_bf16: bool = False) -> None:
    """``--fast MODE`` (and ``--emulated-bf16``) checked against the device
    the model will run on, before anything is built.

    Raises:
        ConfigPrepareError: One line naming the option and the fix
            (:func:`convnext_backbone.inference.check_fast_mode`).
    """
    from convnext_backbone.inference import check_fast_mode
    try:
        check_fast_mode(mode, device_type, emulated_bf16)
    except ValueError as exc:
        raise ConfigPrepareError(f'--fast {mode}: {exc}') from None


def _enable_fast_inference(cfg: Config, mode: str,
                           emulated_bf16: bool = False) -> None:
    """``FastInferenceHook(mode)`` in ``custom_hooks``: the config key that
    mmdet's and mmseg's own tools/test.py read too, so the tools add no
    mechanism of their own. The mode is checked against this machine first,
    so that a mode it cannot run stops before the model is built."""
    import torch
    check_fast_option(mode, 'cuda' if torch.cuda.is_available() else 'cpu',
                      emulated_bf16)
    hooks = [hook for hook in cfg.get('custom_hooks', [])
             if hook.get('type') != 'FastInferenceHook']
    hook = dict(type='FastInferenceHook', mode=mode)
    if emulated_bf16:
        hook['emulated_bf16'] = True
    cfg.custom_hooks = hooks + [hook]


def prepare_test_cfg(cfg: Config,
                     checkpoint: str,
                     *,
                     launcher: str = 'none',
                     work_dir: Optional[str] = None,
                     show_dir: Optional[str] = None,
                     out: Optional[str] = None,
                     tta: bool = False,
                     fast: Optional[str] = None,
                     emulated_bf16: bool = False,
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
            ``tta_pipeline`` (ADE20K: ratios 0.5-1.75 of the test scale
            with flip; V2: 0.75-1.25). Defaults to False.
        fast (str, optional): Test with the plugin's ``FastInferenceHook``
            in this mode (``'exact'``, ``'bf16'``, ``'fp16'``; see
            :mod:`convnext_backbone.inference`). Defaults to None (eager).
        emulated_bf16 (bool): With ``fast='bf16'``, accept a CPU that only
            emulates bfloat16. Defaults to False.
        cfg_options (dict, optional): See :func:`merge_cfg_options`.
        check_data (bool): Run :func:`check_dataset_paths` for test.
            Defaults to True.

    Returns:
        Config: The prepared copy.
    """
    cfg, scope = _prepare_common(
        cfg, launcher=launcher, work_dir=work_dir, cfg_options=cfg_options)
    problem = checkpoint_problem(checkpoint) if is_local_path(checkpoint) \
        else None
    if problem:
        raise ConfigPrepareError(f'checkpoint {checkpoint}: {problem}')
    cfg.load_from = checkpoint
    if show_dir is not None:
        _enable_visualization(cfg, scope, show_dir)
    if tta:
        _enable_tta(cfg)
    if fast is not None:
        _enable_fast_inference(cfg, fast, emulated_bf16)
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

