"""Parameters and FLOPs of a config's model at a given input size.

    python tools/analysis/get_flops.py configs/cascade_mask_rcnn_convnext_t.py
    python tools/analysis/get_flops.py configs/upernet_convnext_b_640_in22k.py

Prints a markdown table row: config, input, params (M), FLOPs (G).

Counted as the paper's numbers were (mmdet 2.x / mmseg 0.x ``forward_dummy``
at ``(3, H, W)``, one image, one multiply-add = one FLOP):

- detection, default input (1280, 800): backbone, FPN and the RPN convs,
  then every box head on 1000 proposals and every mask head on the first
  100 (mmdet 3.x's own ``_forward`` runs the cascade's mask heads on all
  1000 proposals, ten times more);
- segmentation, default input = the test resize scale ((2048, 512) for the
  512-crop configs, (2560, 640) for the 640 ones): backbone and decode head
  on the whole image; the auxiliary head is not run (training only) but its
  parameters are counted, as in the paper.

FLOPs are counted by mmengine's ``FlopAnalyzer`` (fvcore rules; mmcv ops such
as RoIAlign count 0). Runs on CPU; the backbone's ``init_cfg`` is dropped so
nothing is downloaded.
"""
import argparse
import os.path as osp
import sys
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

# Run from a checkout without installing the package.
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmengine.analysis import FlopAnalyzer, parameter_count  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402

from tools.lib.models import build_model_without_weights  # noqa: E402

DET_SHAPE = (1280, 800)
NUM_PROPOSALS = 1000
NUM_MASK_ROIS = 100


class DetFlopsModel(nn.Module):
    """A two-stage detector run as mmdet 2.x's ``forward_dummy``."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, img: torch.Tensor) -> tuple:
        from mmdet.structures.bbox import bbox2roi
        det = self.detector
        x = det.extract_feat(img)
        outs = (det.rpn_head(x), )
        h, w = img.shape[-2:]
        # Fixed boxes: the count matters for FLOPs, the values do not.
        proposals = img.new_tensor([[0., 0., w / 2, h / 2]]).repeat(
            NUM_PROPOSALS, 1)
        rois = bbox2roi([proposals])
        roi_head = det.roi_head
        stages = getattr(roi_head, 'num_stages', None)
        if stages is None:  # StandardRoIHead
            outs += (roi_head._bbox_forward(x, rois)['cls_score'], )
            if roi_head.with_mask:
                outs += (roi_head._mask_forward(
                    x, rois[:NUM_MASK_ROIS])['mask_preds'], )
            return outs
        for stage in range(stages):  # CascadeRoIHead
            outs += (roi_head._bbox_forward(stage, x, rois)['cls_score'], )
        if roi_head.with_mask:
            for stage in range(stages):
                outs += (roi_head._mask_forward(
                    stage, x, rois[:NUM_MASK_ROIS])['mask_preds'], )
        return outs


class SegFlopsModel(nn.Module):
    """A segmentor run on a whole image: backbone + decode head."""

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.segmentor = segmentor

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.segmentor._forward(img)


def default_shape(cfg: Config) -> Tuple[int, int]:
    """(H, W) as the paper counts: (1280, 800) for detection, the test resize
    scale (e.g. (2048, 512)) for segmentation."""
    if cfg.default_scope == 'mmdet':
        return DET_SHAPE
    for transform in cfg.test_dataloader.dataset.pipeline:
        if transform['type'] == 'Resize' and 'scale' in transform:
            return tuple(transform['scale'])
    raise ValueError('no Resize(scale=...) in the test pipeline; pass --shape')


def model_complexity(cfg: Config,
                     shape: Optional[Tuple[int, int]] = None) -> Dict:
    """Build the config's model on CPU and count its params and FLOPs.

    Args:
        cfg (Config): A det (``default_scope='mmdet'``) or seg config.
        shape (tuple[int, int], optional): Input (H, W). Defaults to
            :func:`default_shape`.

    Returns:
        dict: ``params`` (int), ``flops`` (int) and ``shape`` (H, W).
    """
    scope = cfg.default_scope
    shape = tuple(shape or default_shape(cfg))
    model = build_model_without_weights(cfg).eval()
    wrapper = DetFlopsModel(model) if scope == 'mmdet' else SegFlopsModel(
        model)
    img = torch.rand(1, 3, *shape)
    with torch.no_grad():
        analyzer = FlopAnalyzer(wrapper, (img, ))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        flops = analyzer.total()
    return dict(params=parameter_count(model)[''], flops=flops, shape=shape)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Params and FLOPs of a config\'s model (on CPU)')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        help='input H W (one value: square); default: 1280 800 for '
        'detection, the test resize scale (2048 512 / 2560 640) for '
        'segmentation')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, key=value')
    parser.add_argument(
        '--header', action='store_true', help='print the table header too')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        from tools.lib.cfg_options import merge_cfg_options
        merge_cfg_options(cfg, args.cfg_options)
    shape = None
    if args.shape:
        if len(args.shape) > 2:
            sys.exit(f'error: --shape takes H W or one side, got {args.shape}')
        shape = (args.shape * 2)[:2]
    result = model_complexity(cfg, shape)
    name = osp.splitext(osp.basename(args.config))[0]
    if args.header:
        print('| config | input (H, W) | params (M) | FLOPs (G) |')
        print('|---|---|---|---|')
    h, w = result['shape']
    print(f"| {name} | ({h}, {w}) | {result['params'] / 1e6:.1f} | "
          f"{result['flops'] / 1e9:.1f} |")


if __name__ == '__main__':
    main()
