"""Making the paper's GPU configs run where they land (CPU, one process,
fewer GPUs than processes)."""
import os
from typing import List, Optional

import torch
from mmengine.config import Config

from .cfg_walk import iter_dicts
from .errors import ConfigPrepareError
from .log import log_once

_SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN')


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
        log_once(change)
    return changes


def check_cuda_processes(environ: Optional[dict] = None,
                         num_gpus: Optional[int] = None) -> None:
    """Refuse, before any work, a torchrun that starts more CUDA processes
    on this node than there are visible GPUs.

    Each process takes the GPU of its ``LOCAL_RANK``; without this check the
    surplus ones fail deep in NCCL (or share a GPU and deadlock).

    Args:
        environ (dict, optional): Defaults to ``os.environ``.
        num_gpus (int, optional): Defaults to ``torch.cuda.device_count()``.

    Raises:
        ConfigPrepareError: Names both numbers and the fixes.
    """
    environ = os.environ if environ is None else environ
    if num_gpus is None:
        num_gpus = torch.cuda.device_count() if torch.cuda.is_available() \
            else 0
    local_world = environ.get('LOCAL_WORLD_SIZE')
    if num_gpus == 0 or local_world is None:
        return  # CPU processes (gloo), or not started by torchrun
    if int(local_world) > num_gpus:
        visible = environ.get('CUDA_VISIBLE_DEVICES')
        where = (f' (CUDA_VISIBLE_DEVICES={visible})'
                 if visible is not None else '')
        raise ConfigPrepareError(
            f'{local_world} processes were started on this node but only '
            f'{num_gpus} GPU(s) are visible{where}: each process needs its '
            f'own GPU. Start at most {num_gpus} (e.g. bash '
            f'tools/dist_train.sh CONFIG {num_gpus}), make more GPUs '
            'visible, or run on CPU processes with CUDA_VISIBLE_DEVICES=')
