"""Hooks that make interrupted runs resume exactly.

mmengine 0.10.7 restores iteration, optimizer, schedulers, loss scaler and
message hub on ``--resume``, and reseeds from the config, but not the random
streams as they were at the checkpoint: after a resume the augmentations and
drop-path masks differ from the uninterrupted run. :class:`RandomStateHook`
saves the python/numpy/torch(/CUDA) generator states into the checkpoint and
puts them back where the uninterrupted run would have had them.
"""
import random
from typing import Any, Dict, Optional

import numpy as np
import torch
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

RNG_KEY = 'rng_state'


def get_rng_state() -> Dict[str, Any]:
    """States of every global generator a training step may draw from."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(),
                 torch=torch.get_rng_state(), world_size=get_world_size())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of :func:`get_rng_state`."""
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


class _RestoreBeforeNextBatch:
    """Iterator proxy: let ``skip`` batches pass, then restore the random
    state right before the next one is drawn.

    mmengine's ``IterBasedTrainLoop`` re-reads (and re-augments) the batches
    of the iterations already done when it resumes, drawing random numbers
    the uninterrupted run drew long ago; the saved state belongs right after
    that skip, which no hook point reaches.
    """

    def __init__(self, iterator, skip: int, state: Dict[str, Any]) -> None:
        self._iterator = iterator
        self._skip = skip
        self._state: Optional[Dict[str, Any]] = state

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip > 0:
            self._skip -= 1
        elif self._state is not None:
            set_rng_state(self._state)
            self._state = None
        return next(self._iterator)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the global random states in checkpoints; restore them on resume.

    With a fixed seed, ``deterministic=True`` and ``num_workers=0``, a run
    killed after a checkpoint and resumed ends with the same weights as the
    uninterrupted run. Evaluation during training is made neutral to the
    training's random stream (states saved before and restored after it), so
    whether a validation ran before the interruption does not matter.

    Random states are per process; checkpoints are written by rank 0 only,
    so they are restored when the resumed run has one process (a multi-
    process run resumes with the seeds of its config, as mmengine does, and
    says so in the log). Dataloader workers are reseeded by mmengine from
    the seed each epoch and are not covered.
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._val_state: Optional[Dict[str, Any]] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[RNG_KEY] = get_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get(RNG_KEY)
        if not getattr(runner, '_resume', False) or state is None:
            return  # load_from (fine-tuning) or a checkpoint without states
        if state.get('world_size', 1) != 1 or get_world_size() != 1:
            runner.logger.info(
                'RandomStateHook: random states are restored only in '
                'single-process runs; this run keeps the seeds of its config')
            return
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop) and loop._iter > 0:
            loop.dataloader_iterator = _RestoreBeforeNextBatch(
                loop.dataloader_iterator, loop._iter, state)
        else:
            set_rng_state(state)
        runner.logger.info('RandomStateHook: random states restored from '
                           'the checkpoint')

    def before_val_epoch(self, runner) -> None:
        self._val_state = get_rng_state()

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self._val_state is not None:
            set_rng_state(self._val_state)
            self._val_state = None
