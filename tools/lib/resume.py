"""Choosing the checkpoint ``--resume`` continues from."""
import logging
import os
import os.path as osp
import pickle
import zipfile
from typing import Optional

from .errors import ConfigPrepareError
from .log import log_once


def checkpoint_problem(path: str) -> Optional[str]:
    """Why a checkpoint file cannot be resumed from, or None if it can.

    Reads the whole file but unpickles nothing: torch's zip container is
    checked for a complete central directory and correct CRCs, which catches
    files truncated by a killed job or corrupted on disk. Files in torch's
    legacy (non-zip) format, as OpenMMLab's model zoos published them until
    2022, have no such checks; they pass when they start with torch's legacy
    header (and are then read with ``weights_only=True`` like any other).
    """
    if not osp.isfile(path):
        return 'the file does not exist'
    if not zipfile.is_zipfile(path):
        if is_legacy_torch_file(path):
            return None
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


class _NoGlobals(pickle.Unpickler):
    """An unpickler that refuses every global: it can read the legacy
    header's plain ints and nothing that could run code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f'global {module}.{name} refused')


def is_legacy_torch_file(path: str) -> bool:
    """Whether a file starts as ``torch.save(...,
    _use_new_zipfile_serialization=False)`` writes: a pickled magic number
    (``torch.serialization.MAGIC_NUMBER``) and protocol version."""
    magic_number = 0x1950a86a20f9469cfc6c  # torch/serialization.py
    try:
        with open(path, 'rb') as f:
            unpickler = _NoGlobals(f)
            return (unpickler.load() == magic_number
                    and isinstance(unpickler.load(), int))
    except Exception:  # any unreadable or other pickle: not that format
        return False


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
                log_once('--resume: skipped ' + '; '.join(skipped) +
                         f'; resuming from {path}')
            return path
        skipped.append(f'{path} ({problem})')
    if skipped:
        raise ConfigPrepareError(
            f'--resume: no readable checkpoint in {work_dir}: ' +
            '; '.join(skipped) + '. Remove the damaged files to start '
            'from scratch, or resume from a copy with --resume <path>')
    log_once(f'--resume: no checkpoint in {work_dir}; training starts from '
             'scratch', logging.INFO)
    return None

