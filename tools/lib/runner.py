"""Building mmengine's Runner for a prepared config, and writing the test
metrics."""
import datetime
import json
import logging
import numbers
import os
import os.path as osp
from typing import Any, Dict

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.runner import Runner
from mmengine.visualization import Visualizer

from .device import check_cuda_processes
from .errors import ConfigPrepareError
from .log import log_once


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


def _own_visualizer_name(cfg: Config) -> None:
    """Give this run a visualizer name not yet used in the process.

    Visualizers are process-wide instances by name (mmengine's
    ``ManagerMixin``), and the hooks draw with
    ``Visualizer.get_current_instance()``: the instance whose *name* was
    registered last. A second Runner in one process (``tools/demo.py``, the
    tests, a notebook) reusing the configs' ``name='visualizer'`` would get
    the earlier run's instance (its save_dir, or a ``SegLocalVisualizer`` in
    a detector), or not be the current one. mmengine's own default, when
    a config names none, is likewise one name per run.
    """
    visualizer = cfg.get('visualizer')
    if not isinstance(visualizer, dict):
        return
    base = visualizer.get('name', 'visualizer')
    name, k = base, 1
    while Visualizer.check_instance_created(name):
        k += 1
        name = f'{base}#{k}'
    visualizer['name'] = name


def build_runner(cfg: Config) -> Runner:
    """mmengine's Runner for a prepared config (``runner_type`` honoured).

    Args:
        cfg (Config): From :func:`prepare_train_cfg` or
            :func:`prepare_test_cfg`.

    Returns:
        Runner: Ready for ``train()`` / ``test()``.
    """
    if cfg.get('launcher', 'none') == 'pytorch':
        check_cuda_processes()
    if (cfg.get('launcher', 'none') != 'none'
            and not torch.cuda.is_available()
            and not (torch_dist.is_available()
                     and torch_dist.is_initialized())):
        _init_cpu_distributed(cfg)
    _own_visualizer_name(cfg)
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
    log_once(f'metrics written to {path}', logging.INFO)

