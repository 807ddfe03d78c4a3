"""What the train and test tools share: their launch options, and the step
from a config file to a Runner with its errors as one line."""
import argparse
import difflib
import glob
import os
import os.path as osp
import sys
from typing import Any, Callable, Tuple

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from .errors import ConfigPrepareError
from .prepare import LAUNCHERS
from .runner import build_runner


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
        choices=LAUNCHERS,
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0).
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def add_fast_arg(parser: argparse.ArgumentParser) -> None:
    """``--fast {exact,bf16,fp16}``: the inference conversion of
    :func:`convnext_backbone.inference.optimize_for_inference`."""
    from convnext_backbone.inference import FAST_MODES
    parser.add_argument(
        '--fast',
        choices=FAST_MODES,
        help='optimise the model for inference: exact = conv-BN folding and '
        'channels-last memory (fp32, same predictions); bf16 (CPUs with '
        'AVX512-BF16/AMX, or CUDA) / fp16 (CUDA) add autocast to that dtype '
        '(results change a little: docs/inference_speed.md)')
    parser.add_argument(
        '--emulated-bf16',
        action='store_true',
        help='with --fast bf16 on a CPU without native bfloat16: run it '
        'emulated (about 10x slower than fp32, the same rounding), to '
        'measure how bf16 changes the results')


def export_local_rank(args: argparse.Namespace) -> None:
    """``LOCAL_RANK`` for mmengine when the launcher passed it as an
    argument instead of the environment."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)


def parse_launch_args(parser: argparse.ArgumentParser,
                      phase: str) -> argparse.Namespace:
    """Parse the command line with the launch options added (see
    :func:`add_launch_args`), and export ``LOCAL_RANK``.

    Args:
        parser (ArgumentParser): The tool's own arguments; extended in
            place.
        phase (str): ``'train'`` or ``'test'``, for the help example.

    Returns:
        Namespace: The parsed arguments.
    """
    add_launch_args(parser, phase)
    args = parser.parse_args()
    export_local_rank(args)
    return args


def prepared_runner(prepare: Callable[..., Config], args: argparse.Namespace,
                    *prepare_args: Any,
                    **prepare_kwargs: Any) -> Tuple[Config, Runner]:
    """Load the config file of the command line, prepare it and build its
    Runner; a :class:`ConfigPrepareError` ends the process with one
    ``error: ...`` line (no traceback: the message says what to do).

    Args:
        prepare (callable): ``prepare_train_cfg`` or ``prepare_test_cfg``.
        args (Namespace): The tool's command line: ``config``,
            ``work_dir`` and the launch options (:func:`add_launch_args`),
            which are passed on to ``prepare``.
        *prepare_args, **prepare_kwargs: ``prepare``'s other arguments.

    Returns:
        tuple[Config, Runner]: The prepared config and its Runner.
    """
    if not osp.isfile(args.config):
        sys.exit(f'error: {missing_config_message(args.config)}')
    cfg = Config.fromfile(args.config)
    try:
        cfg = prepare(
            cfg,
            *prepare_args,
            launcher=args.launcher,
            work_dir=args.work_dir,
            cfg_options=args.cfg_options,
            **prepare_kwargs)
        runner = build_runner(cfg)
    except ConfigPrepareError as err:
        sys.exit(f'error: {err}')
    return cfg, runner


def missing_config_message(path: str) -> str:
    """What to say for a config path that is not a file: the path, and the
    config files of its directory (or of ``configs/``) that it resembles."""
    folder = osp.dirname(path) or '.'
    if not osp.isdir(folder):
        folder = 'configs'
    candidates = sorted(glob.glob(osp.join(folder, '*.py')))
    close = difflib.get_close_matches(path, candidates, n=3, cutoff=0.6)
    hint = (f"; did you mean {', '.join(repr(c) for c in close)}?"
            if close else f'; the configs are under {folder}/')
    return f'config file {path!r} does not exist{hint}'
