"""Test (and evaluate) a ConvNeXt detector or segmentor checkpoint.

    python tools/test.py configs/upernet_convnext_t_512.py ckpt.pth --tta
    bash tools/dist_test.sh configs/mask_rcnn_convnext_t.py ckpt.pth 8
    python tools/test.py configs/upernet_convnext_t_512.py ckpt.pth --fast bf16
    python tools/test.py configs/mask_rcnn_convnext_t.py --bundle DIR

``--bundle`` tests a bundle of ``tools/deploy.py`` (its ONNX graph with its
own pre- and post-processing) instead of a checkpoint, on the config's
test set with the config's evaluator (docs/deploy.md).

The metrics are logged by mmengine (``<work_dir>/<timestamp>/``) and written
to ``<work_dir>/metrics.json``.
"""
import argparse
import os.path as osp
import sys

# Run from a checkout without installing the package.
REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from tools.lib.cli import (add_fast_arg, parse_launch_args,  # noqa: E402
                           prepared_runner)
from tools.lib.prepare import prepare_test_cfg  # noqa: E402
from tools.lib.runner import dump_metrics  # noqa: E402
from tools.lib.weights import (CheckpointFileError,  # noqa: E402
                               check_checkpoint_fits)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Test a ConvNeXt detector or segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', nargs='?',
                        help='checkpoint file (path or URL)')
    parser.add_argument(
        '--bundle', metavar='DIR',
        help='test the deploy bundle in DIR (tools/deploy.py) instead of a '
        'checkpoint: the predictions of its graph, in the precision its '
        'bundle.json names')
    parser.add_argument(
        '--work-dir',
        help='where logs and metrics.json go (default: ./work_dirs/<config>)')
    parser.add_argument(
        '--show-dir',
        help='draw every prediction into this directory (mmdet: '
        '<dir>/<image>; mmseg: <dir>/vis_data/vis_image/)')
    parser.add_argument(
        '--out',
        help='mmdet: dump predictions to this .pkl file; mmseg: save '
        'predicted label maps into this directory')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation as the config defines it (ADE20K '
        'configs: ratios 0.5-1.75 of the test scale with flip; V2: '
        '0.75-1.25)')
    add_fast_arg(parser)
    return parse_launch_args(parser, 'test')


def check_weights_args(args: argparse.Namespace) -> None:
    """One of CHECKPOINT and ``--bundle``; a bundle is its own model, so
    ``--tta`` and ``--fast`` do not apply (one ``error:`` line)."""
    if (args.checkpoint is None) == (args.bundle is None):
        sys.exit('error: give a CHECKPOINT or --bundle DIR (one of them)')
    if args.bundle is not None and (args.tta or args.fast):
        option = '--tta' if args.tta else '--fast'
        sys.exit(f'error: {option} changes the PyTorch model; with --bundle '
                 'the graph is tested as tools/deploy.py wrote it')


def main() -> None:
    args = parse_args()
    check_weights_args(args)
    bundle = None
    if args.bundle is not None:  # a bad bundle stops before the runner
        from tools.lib.deploy.evaluate import BundleModel
        from tools.lib.deploy.export import DeployError
        try:
            bundle = BundleModel(args.bundle)
        except DeployError as err:
            sys.exit(f'error: {err}')
    cfg, runner = prepared_runner(
        prepare_test_cfg,
        args,
        args.checkpoint,
        show_dir=args.show_dir,
        out=args.out,
        tta=args.tta,
        fast=args.fast,
        emulated_bf16=args.emulated_bf16)
    if bundle is not None:
        runner.model = bundle
        runner.logger.info(f'testing the {bundle.precision} bundle '
                           f'{args.bundle}')
    else:
        try:
            check_checkpoint_fits(runner.model, args.checkpoint,
                                  args.config)
        except CheckpointFileError as err:
            sys.exit(f'error: {err}')
    metrics = runner.test()
    dump_metrics(metrics, osp.join(cfg.work_dir, 'metrics.json'))


if __name__ == '__main__':
    main()
