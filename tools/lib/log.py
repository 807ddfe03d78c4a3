"""Logging of the tools' config changes."""
import logging
import os

from mmengine.logging import print_log


def log_once(message: str, level: int = logging.WARNING) -> None:
    """Log on the first process only: every process makes the same change."""
    rank = os.environ.get('RANK', os.environ.get('SLURM_PROCID', '0'))
    if rank == '0':
        print_log(message, logger='current', level=level)

