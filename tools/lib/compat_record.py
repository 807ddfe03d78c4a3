"""The records of the ``swap_backbone`` compatibility matrix: run by
``tools/compat_matrix.py``, each matrix test (tests/test_swap.py,
tests/test_downstream.py) appends its case's outcome as a JSON line to the
file :data:`RECORD_ENV` names, from which the tool writes the table."""
import json
import os
from typing import Any, Dict

#: The environment variable naming the record file; unset: no recording.
RECORD_ENV = 'CONVNEXT_COMPAT_RECORD'


def recording() -> bool:
    """Whether the tests run under ``tools/compat_matrix.py``."""
    return bool(os.environ.get(RECORD_ENV))


def record_case(**fields: Any) -> None:
    """Append one case's outcome (a JSON line) to the file the tool reads.

    Args:
        **fields: ``framework``, ``architecture``, ``config``, ``result``
            (``pass`` / ``clear error`` / ``fail`` / ``not run here``),
            ``note``; for a swapped config also :func:`swap_fields`.
    """
    if recording():
        with open(os.environ[RECORD_ENV], 'a') as f:
            f.write(json.dumps(fields) + '\n')


def swap_fields(outcome: Any) -> Dict[str, Any]:
    """The record fields of one swap, from what ``swap_backbone`` probed.

    Args:
        outcome (Config | Exception | None): What ``swap_backbone``
            returned or raised; its ``swap_record`` (a ``SwapRecord``) is
            read, not probed again.

    Returns:
        dict: ``old_backbone``, ``old_strides``, ``old_channels`` once the
        old backbone was probed; ``out_indices``, ``new_strides``,
        ``new_channels`` once the swap succeeded; empty before the probe.
    """
    record = getattr(outcome, 'swap_record', None)
    if record is None:
        return {}
    fields = dict(old_backbone=record.old_backbone,
                  old_channels=list(record.old_channels),
                  old_strides=list(record.old_strides))
    if record.out_indices:
        fields.update(out_indices=list(record.out_indices),
                      new_channels=list(record.new_channels),
                      new_strides=list(record.new_strides))
    return fields
