"""Run a trained detector or segmentor on your own images.

    python tools/infer.py CONFIG CHECKPOINT INPUT... --out-dir DIR \\
        [--device cpu|cuda] [--score-thr 0.3] [--fast exact|bf16|fp16]

INPUT: image files or folders of images (not searched recursively). For
each image ``a.jpg`` it writes ``DIR/vis/a.jpg`` (the predictions drawn:
boxes and masks, or the segmentation overlay) and ``DIR/preds/a.json``
(detection: box, score, label, class and mask as COCO RLE per instance;
segmentation: the classes of the label map with their pixel counts), and
for segmentation ``DIR/preds/a.png``, the label map (class index per
pixel). Detection or segmentation is decided by the config's
``default_scope`` (mmdet or mmseg); the inference itself is mmdet's
``DetInferencer`` or mmseg's ``MMSegInferencer``.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional, Sequence

# Run from a checkout without installing the package.
REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from tools.lib.cli import add_fast_arg  # noqa: E402
from tools.lib.errors import ConfigPrepareError  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog='Writes DIR/vis/<image>.jpg, DIR/preds/<image>.json '
        '(and, segmentation, DIR/preds/<image>.png).')
    parser.add_argument('config', help='the config the checkpoint was '
                        'trained with')
    parser.add_argument('checkpoint', help='checkpoint file (path or URL)')
    parser.add_argument('inputs', nargs='+', metavar='INPUT',
                        help='image files or folders of images')
    parser.add_argument('--out-dir', required=True,
                        help='where vis/ and preds/ are written')
    parser.add_argument('--device', default=None,
                        help='cpu, cuda or cuda:N (default: cuda if torch '
                        'sees a GPU, else cpu)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection: instances drawn and written from '
                        'this score on (default 0.3)')
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bar')
    add_fast_arg(parser)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from tools.lib.cli import missing_config_message
    if not osp.isfile(args.config):
        sys.exit(f'error: {missing_config_message(args.config)}')
    try:
        # Inputs and device first: a typo fails in a second, not after the
        # model is built.
        from tools.lib.infer import (build_inferencer, check_device,
                                     collect_images, run_inference)
        images = collect_images(args.inputs)
        device = check_device(args.device)
        if args.fast is not None:
            from tools.lib.prepare import check_fast_option
            check_fast_option(args.fast, device.split(':')[0],
                              args.emulated_bf16)
        from mmengine.config import Config
        cfg = Config.fromfile(args.config)
        task, inferencer = build_inferencer(cfg, args.checkpoint, device,
                                            args.fast, args.emulated_bf16)
    except ConfigPrepareError as err:
        sys.exit(f'error: {err}')
    done, failed = run_inference(
        inferencer, task, images, args.out_dir, score_thr=args.score_thr,
        progress=not args.no_progress)
    for message in failed:
        print(f'error: {message}', file=sys.stderr)
    print(f'{done} image(s) -> {args.out_dir}/vis (drawn), '
          f'{args.out_dir}/preds (json' +
          (', label png' if task == 'seg' else '') + ')')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
