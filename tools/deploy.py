"""Export a ConvNeXt detector or segmentor to ONNX and check it in
onnxruntime against the PyTorch model's own predictions.

    python tools/deploy.py configs/mask_rcnn_convnext_t.py ckpt.pth \\
        --out-dir work_dirs/onnx/mask_rcnn --image demo.jpg
    python tools/deploy.py configs/upernet_convnext_t_512.py ckpt.pth \\
        --out-dir work_dirs/onnx/upernet --shape 512 512

Writes ``DIR/end2end.onnx`` (plus ``bbox_head*.onnx`` / ``mask_head*.onnx``
for two-stage detectors), ``DIR/deploy.json`` and ``DIR/deploy_cfg.py``
(what ``tools.lib.deploy.runtime.load_runtime(DIR)`` needs) and
``DIR/report.json`` (agreement, max abs differences, latencies, versions).
Exits with status 1 when an image's agreement is below 0.99, naming what
disagrees; a bad config, checkpoint or image is one ``error: ...`` line.
See docs/deploy.md.
"""
import argparse
import json
import logging
import os.path as osp
import sys
from typing import List, Optional

# Run from a checkout without installing the package.
REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmengine.config import DictAction  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export a ConvNeXt detector / segmentor to ONNX and '
        'compare onnxruntime with PyTorch')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-dir', required=True,
                        help='where the graphs and report.json go')
    parser.add_argument(
        '--image', nargs='+', default=[],
        help='image file(s) to compare on; the first is the export example '
        '(default: a synthetic 240x320 image)')
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        '--shape', nargs=2, type=int, metavar=('H', 'W'),
        help='static export: inputs of exactly H x W after the test '
        'pipeline (for slide-mode segmentors: the crop size); other sizes '
        'stop with an error')
    size.add_argument('--dynamic', action='store_true',
                      help='dynamic batch, height and width (the default)')
    parser.add_argument('--opset', type=int, default=None,
                        help='ONNX opset (default 17)')
    parser.add_argument(
        '--fp16', action='store_true',
        help='fp16 graphs; LayerNorm and GRN statistics stay fp32')
    parser.add_argument('--repeat', type=int, default=3,
                        help='timed runs per runtime for latency_ms (median; '
                        '0: no timing)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, key=value (e.g. '
        'model.test_cfg.rcnn.score_thr=0.0)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from tools.lib.deploy import deploy
    from tools.lib.deploy.export import DEFAULT_OPSET, DeployError
    logging.getLogger('mmengine').setLevel(logging.WARNING)
    try:
        report = deploy(
            args.config,
            args.checkpoint,
            args.out_dir,
            images=args.image,
            shape=tuple(args.shape) if args.shape else None,
            opset=args.opset or DEFAULT_OPSET,
            fp16=args.fp16,
            cfg_options=args.cfg_options,
            repeat=args.repeat)
    except DeployError as err:
        sys.exit(f'error: {err}')
    summary = {k: report[k] for k in ('task', 'agreement', 'max_abs_diff',
                                      'latency_ms', 'export_s')}
    print(json.dumps(summary))
    print(f"report: {osp.join(args.out_dir, 'report.json')}")
    if report['disagreements']:
        print('the exported model disagrees with PyTorch (agreement < '
              f"{report['min_agreement']}):", file=sys.stderr)
        for line in report['disagreements']:
            print(f'  {line}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
