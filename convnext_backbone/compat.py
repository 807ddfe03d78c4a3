"""Compatibility of the pinned OpenMMLab stack with today's torch and numpy.

Applied once, on ``import convnext_backbone``. Every fix here is narrow and
keeps the security defaults of the newer library.

- torch >= 2.6 loads checkpoints with ``weights_only=True``. mmengine 0.10.7
  writes its message hub (``HistoryBuffer`` holding numpy arrays) and numpy
  scalars/arrays (metrics, random states) into every runner checkpoint, so
  ``--resume`` fails with ``UnpicklingError``. We allow-list exactly those
  types with ``torch.serialization.add_safe_globals``; ``weights_only`` stays
  True, so any other global (e.g. a pickled callable) is still refused.
- ``HistoryBuffer.__getstate__`` of mmengine 0.10.7 pickles its statistics
  *functions* (``getattr(HistoryBuffer, 'min')``), which no safe loader may
  accept (allowing ``getattr`` would let a file call any method of any
  allowed type). They are class-level and restored by ``__setstate__``
  anyway, so we stop writing them. Checkpoints written by plain mmengine
  0.10.7 still carry them and are refused with torch's error; re-save them
  once from a trusted environment (see the README).
"""
from typing import List

import numpy as np
import torch

_APPLIED = False


def mmengine_checkpoint_safe_globals() -> List[object]:
    """The non-torch types mmengine 0.10.x puts into runner checkpoints.

    Returns:
        list: Classes/functions to pass to ``add_safe_globals``: mmengine's
        ``HistoryBuffer`` and what numpy needs to rebuild arrays, scalars and
        dtypes (no general-purpose callables).
    """
    from mmengine.logging import HistoryBuffer
    try:  # numpy >= 2 renamed numpy.core to numpy._core
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    safe: List[object] = [HistoryBuffer, multiarray._reconstruct,
                          multiarray.scalar, np.ndarray, np.dtype]
    # numpy >= 1.25 pickles a dtype through its class (numpy.dtypes.*DType).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        safe += [getattr(dtypes, name) for name in dir(dtypes)
                 if name.endswith('DType') and name != 'StringDType']
    return safe


def _history_buffer_getstate(self) -> dict:
    """State of a HistoryBuffer without its (class-level) functions."""
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def apply() -> None:
    """Apply all compatibility fixes (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    from mmengine.logging import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is not None:  # torch >= 2.4
        add_safe_globals(mmengine_checkpoint_safe_globals())
    _APPLIED = True
