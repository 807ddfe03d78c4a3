"""Command-line options the train and test tools share."""
import argparse
import os

from mmengine.config import DictAction


def add_launch_args(parser: argparse.ArgumentParser, phase: str) -> None:
    """``--cfg-options``, ``--launcher`` and the ``--local-rank`` that
    ``torch.distributed.launch`` passes.

    Args:
        parser (ArgumentParser): Extended in place.
        phase (str): ``'train'`` or ``'test'``, for the help example.
    """
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, key=value (e.g. '
        f'{phase}_dataloader.dataset.data_root=/data/coco/ or key="[a,b]" '
        'for lists); the top-level key must exist in the config')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0).
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def export_local_rank(args: argparse.Namespace) -> None:
    """``LOCAL_RANK`` for mmengine when the launcher passed it as an
    argument instead of the environment."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
