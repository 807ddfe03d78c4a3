"""Export a ConvNeXt detector or segmentor to a bundle that predicts with
onnxruntime, numpy and OpenCV alone, and check it against the PyTorch
model's own predictions.

    python tools/deploy.py configs/mask_rcnn_convnext_t.py ckpt.pth \\
        --out-dir work_dirs/bundle/mask_rcnn --image demo.jpg other.jpg
    python DIR/predict.py images/ --out-dir preds_dir   # anywhere

Writes ``DIR/end2end.onnx`` (one graph, image to predictions, standard
ONNX operators only), ``DIR/bundle.json`` (preprocessing, classes,
palette), ``DIR/predict.py`` (the standalone predictor) and
``DIR/report.json`` (agreement with ``model.test_step`` per image,
latencies, sizes, versions). Exits with status 1 when an image's agreement
is below 0.99, naming what disagrees; a bad config, checkpoint, image or
output folder is one ``error: ...`` line. See docs/deploy.md.
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
        description='Export a ConvNeXt detector / segmentor to a bundle '
        '(one ONNX graph, bundle.json, predict.py) and compare it with '
        'PyTorch')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-dir', required=True,
                        help='the bundle folder (created)')
    parser.add_argument(
        '--image', nargs='+', default=[],
        help='image file(s) to compare on; the first is the export example '
        '(default: three synthetic images of different sizes)')
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        '--shape', nargs=2, type=int, metavar=('H', 'W'),
        help='static graph: inputs of exactly H x W after the test '
        'pipeline and padding; the bundle refuses other sizes')
    size.add_argument('--dynamic', action='store_true',
                      help='dynamic height and width (the default)')
    parser.add_argument('--opset', type=int, default=None,
                        help='ONNX opset (default 17)')
    lower = parser.add_mutually_exclusive_group()
    lower.add_argument(
        '--fp16', action='store_true',
        help='also export the graph with fp16 networks (LayerNorm / GRN '
        'statistics, box decoding, NMS, RoIAlign in fp32), for GPU '
        'runtimes; the bundle then uses it, its agreement and latency go '
        'to report.json (fp16)')
    lower.add_argument(
        '--int8', action='store_true',
        help='also quantize the graph to int8 (onnxruntime static '
        'quantization, QDQ) calibrated on --calib; the bundle then uses '
        'it, its agreement and latency go to report.json (int8)')
    parser.add_argument('--calib', metavar='DIR',
                        help='folder of calibration images for --int8')
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
    if args.int8 != bool(args.calib):
        sys.exit('error: --int8 and --calib DIR go together (DIR: images '
                 'like those the bundle will see)')
    from tools.lib.deploy import DEFAULT_OPSET, DeployError, deploy
    logging.getLogger('mmengine').setLevel(logging.WARNING)
    try:
        report = deploy(
            args.config,
            args.checkpoint,
            args.out_dir,
            images=args.image,
            shape=tuple(args.shape) if args.shape else None,
            opset=args.opset or DEFAULT_OPSET,
            cfg_options=args.cfg_options,
            repeat=args.repeat,
            fp16=args.fp16,
            int8_calib=args.calib)
    except DeployError as err:
        sys.exit(f'error: {err}')
    summary = {k: report[k] for k in ('task', 'agreement', 'latency_ms',
                                      'export_s')}
    summary['bundle_mb'] = report['bundle']['mb']
    for lower in ('fp16', 'int8'):
        if lower in report:
            summary[lower] = {k: report[lower][k]
                              for k in ('agreement', 'latency_ms', 'mb')}
    print(json.dumps(summary))
    print(f"bundle: {args.out_dir} (python {osp.join(args.out_dir, 'predict.py')}"
          ' IMAGE... --out-dir DIR); report: '
          f"{osp.join(args.out_dir, 'report.json')}")
    for line in report['skipped']:
        print(f'error: {line}', file=sys.stderr)
    if report['disagreements']:
        print('the bundle disagrees with PyTorch (agreement < '
              f"{report['thresholds']['min_agreement']}):", file=sys.stderr)
        for line in report['disagreements']:
            print(f'  {line}', file=sys.stderr)
        return 1
    return 1 if report['skipped'] else 0


if __name__ == '__main__':
    sys.exit(main())
