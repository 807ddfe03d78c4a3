# Copyright (c) convnext_backbone contributors. All rights reserved.
"""Generate the deterministic toy datasets used by the toy configs.

Example::

    python tools/generate_toy_data.py --root data --seed 0

writes ``data/toy_coco`` (COCO instance segmentation) and ``data/toy_ade``
(ADE20K-layout semantic segmentation). Existing sets generated with the same
parameters are kept unless ``--overwrite`` is given.
"""
import argparse
import json
import os.path as osp
import sys
import time
from typing import List, Optional

# Run from a checkout without installing anything: tools.lib.toy_data needs
# only numpy, OpenCV and pycocotools (not the plugin, mmcv or mmdet).
REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from tools.lib import toy_data  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate the toy COCO / ADE20K-layout shape datasets')
    parser.add_argument(
        '--root',
        default=toy_data.DEFAULT_ROOT,
        help='data root; sets go to ROOT/toy_coco and ROOT/toy_ade')
    parser.add_argument(
        '--seed', type=int, default=toy_data.DEFAULT_SEED, help='random seed')
    parser.add_argument(
        '--num-train',
        type=int,
        default=toy_data.DEFAULT_NUM_TRAIN,
        help='training images per set')
    parser.add_argument(
        '--num-val',
        type=int,
        default=toy_data.DEFAULT_NUM_VAL,
        help='validation images per set')
    parser.add_argument(
        '--img-size',
        type=int,
        nargs='+',
        default=list(toy_data.DEFAULT_IMG_SIZE),
        metavar='N',
        help='image size: one value (square) or two values H W')
    parser.add_argument(
        '--only',
        choices=['coco', 'ade'],
        default=None,
        help='generate only one of the two sets')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='regenerate sets even if they already exist')
    args = parser.parse_args(argv)
    if len(args.img_size) not in (1, 2):
        parser.error('--img-size takes one value or two values (H W)')
    return args


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    start = time.time()
    results = toy_data.generate_toy_data(
        root=args.root,
        seed=args.seed,
        num_train=args.num_train,
        num_val=args.num_val,
        img_size=args.img_size,
        overwrite=args.overwrite,
        coco=args.only in (None, 'coco'),
        ade=args.only in (None, 'ade'))
    for kind, summary in results.items():
        state = 'skipped (already exists)' if summary['skipped'] else 'written'
        print(f'[{kind}] {summary["root"]}: {state}')
        print(json.dumps(summary, indent=2, default=str))
    print(f'done in {time.time() - start:.1f}s')
    return results


if __name__ == '__main__':
    main()
