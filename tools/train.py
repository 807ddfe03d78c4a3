"""Train a ConvNeXt detector (mmdet) or segmentor (mmseg) from a config.

    python tools/train.py configs/mask_rcnn_convnext_t.py
    bash tools/dist_train.sh configs/upernet_convnext_t_512.py 8

The config's ``default_scope`` decides between mmdet and mmseg; mmengine's
Runner does the work. Without CUDA the same config runs in fp32 with gloo and
BN (see :func:`tools.lib.device.adapt_to_device`).
"""
import argparse
import os.path as osp
import sys

# Run from a checkout without installing the package.
REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from tools.lib.cli import parse_launch_args, prepared_runner  # noqa: E402
from tools.lib.prepare import prepare_train_cfg  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train a ConvNeXt detector or segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--work-dir',
        help='where logs and checkpoints go (default: ./work_dirs/<config>)')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or without a value from the '
        'latest checkpoint of the work dir')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision (AmpOptimWrapper); fp32 where there is no CUDA')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lrs linearly from auto_scale_lr.base_batch_size (16 '
        'in the V1 paper configs and the V2 UperNet, 32 in the V2 Mask '
        'R-CNN) to GPUs x batch_size')
    return parse_launch_args(parser, 'train')


def main() -> None:
    args = parse_args()
    _, runner = prepared_runner(
        prepare_train_cfg,
        args,
        amp=args.amp,
        resume=args.resume,
        auto_scale_lr=args.auto_scale_lr)
    runner.train()


if __name__ == '__main__':
    main()
