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
  once from a trusted environment (recipe: docs/faq.md).
- onedl-mmengine (the maintained fork) loads every checkpoint through
  ``mmengine.runner.checkpoint._safe_torch_load``, which retries with
  ``weights_only=False`` when the safe load fails: a checkpoint whose pickle
  calls any function (``init_cfg``, ``load_from``, resume) would run it. We
  replace that function by one that keeps ``weights_only=True`` and names the
  refused global and how to allow it deliberately.
- mmengine maps the ``mmseg::`` config prefix to the distribution
  ``mmsegmentation``; the forks install the same module as another
  distribution (``onedl-mmsegmentation``), and ``mmseg::`` bases then fail
  with "mmsegmentation is not installed". Where an OpenMMLab module is
  importable but its upstream distribution is absent, we point the prefix at
  the distribution that installed the module.
"""
import importlib.util
import pickle
from importlib import metadata
from typing import Dict, List

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


def safe_torch_load(file, map_location=None, weights_only=None):
    """``torch.load`` with ``weights_only=True`` unless the caller says
    otherwise, and no retry without it.

    Takes the place of onedl-mmengine's ``_safe_torch_load`` (same
    signature). mmengine's own globals are allowed by :func:`apply`.

    Raises:
        pickle.UnpicklingError: The file needs a global outside the
            allow-list; the message names it and how to allow it.
    """
    if weights_only is None:
        weights_only = True
    try:
        return torch.load(
            file, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as exc:
        name = file if isinstance(file, str) else type(file).__name__
        raise pickle.UnpicklingError(
            f'convnext_backbone refused to load checkpoint {name}: it needs a '
            f'global that is not allowed for safe loading ({exc}). If you '
            'trust the file, allow that global deliberately with '
            'torch.serialization.add_safe_globals([...]) in a module your '
            "config lists in custom_imports, or re-save the file from a "
            'trusted environment (recipe: docs/faq.md in the '
            'convnext_backbone repository)') from exc


def _keep_loader_safe() -> bool:
    """Replace onedl-mmengine's falling-back loader; False on upstream
    mmengine (which calls ``torch.load`` directly and needs nothing)."""
    from mmengine.runner import checkpoint
    if not hasattr(checkpoint, '_safe_torch_load'):
        return False
    # A private name of mmengine: there is no public hook for the loader,
    # and every load of the fork (load_checkpoint, CheckpointLoader's file,
    # http and mmengine schemes, resume) looks it up in this module.
    checkpoint._safe_torch_load = safe_torch_load
    return True


def map_forked_distributions() -> Dict[str, str]:
    """Point mmengine's ``module::`` config prefixes at the distribution that
    installed each module where the upstream one is absent.

    Returns:
        dict: ``{module: distribution}`` of the prefixes changed, e.g.
        ``{'mmseg': 'onedl-mmsegmentation'}``; empty on upstream.
    """
    from mmengine.config import utils as config_utils
    table = getattr(config_utils, 'MODULE2PACKAGE', None)
    if table is None:  # mmengine < 0.10 named it PKG2PROJECT
        table = config_utils.PKG2PROJECT
    changed: Dict[str, str] = {}
    providers = None
    for module, dist in table.items():
        if importlib.util.find_spec(module) is None:
            continue
        try:
            metadata.version(dist)
            continue
        except metadata.PackageNotFoundError:
            pass
        if providers is None:  # scans all distributions: only when needed
            providers = metadata.packages_distributions()
        found = providers.get(module, [])
        if len(found) == 1:
            table[module] = changed[module] = found[0]
    return changed


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
    _keep_loader_safe()
    map_forked_distributions()
    _APPLIED = True
