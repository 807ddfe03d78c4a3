"""Export figures of whole models: for each paper model (and two
``swap_backbone`` models) tools/deploy.py's ``deploy`` with random weights,
at full size, on two synthetic images of different sizes (the first, the
export example, non-square), printing one row per model: agreement of the
bundle with mmdet's / mmseg's own ``test_step``, the largest score
difference of matched detections, the latency of a whole prediction in
PyTorch (eager ``test_step``) and in the bundle (``predict.py``'s
``Predictor``: preprocessing, onnxruntime, mask pasting), the export time
and the bundle's size.

    python tools/analysis/deploy_figures.py --json docs/benchmarks/cpu_deploy.json
    python tools/analysis/deploy_figures.py --models upernet_t_slide --repeat 1

tests/test_deploy.py checks the same models for agreement at micro size;
this tool gives the figures of the full-size ones (docs/deploy.md).
"""
import argparse
import json
import os.path as osp
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402

#: Random weights: enough boxes above threshold to compare NMS and masks.
DET = {'model.test_cfg.rcnn.score_thr': 0.0,
       'model.test_cfg.rcnn.max_per_img': 100}
#: H, W of the synthetic images: detection resizes to 800 x 1067 (padded
#: to 800 x 1088) and 800 x 800; segmentation to 512 x 683 and 512 x 512;
#: the slide case's to 512 x 1024 (3 windows of 512) and 512 x 512 (1;
#: its graph loops over the windows an image of any size needs).
DET_IMAGES = ((480, 640), (600, 600))
SEG_IMAGES = ((480, 640), (400, 400))
SLIDE_IMAGES = ((480, 960), (400, 400))

#: name -> (config, cfg_options, static shape, images, bbox head init)
CASES: Dict[str, Tuple[str, Dict[str, Any], Optional[Tuple[int, int]],
                       tuple, Optional[dict]]] = {
    'mask_rcnn_t': ('configs/mask_rcnn_convnext_t.py', DET, None,
                    DET_IMAGES, None),
    'mask_rcnn_v2_b_soft_nms': ('configs/convnextv2/mask_rcnn_convnextv2_b.py',
                                DET, None, DET_IMAGES, None),
    'cascade_mask_rcnn_t': ('configs/cascade_mask_rcnn_convnext_t.py', DET,
                            None, DET_IMAGES, None),
    'upernet_t_whole': ('configs/upernet_convnext_t_512.py',
                        {'model.test_cfg.mode': 'whole'}, None, SEG_IMAGES,
                        None),
    'upernet_t_slide': ('configs/upernet_convnext_t_512.py', {}, None,
                        SLIDE_IMAGES, None),
    # PyTorch's default init saturates RetinaNet's classifier (scores tied
    # at 1.0) and its own puts them all at the 0.01 prior; at full width
    # Normal(0, 0.02) spreads them (0.83-0.88 here; 0.1, which the micro
    # heads of tests/test_deploy.py take, overflows: no detection at all)
    'retinanet_t_swap': ('configs/examples/retinanet_convnext_t_fpn_1x_coco.py',
                         {'model.test_cfg.score_thr': 0.0}, None, DET_IMAGES,
                         dict(type='Normal', layer='Conv2d', std=0.02)),
    'deeplabv3plus_t_swap': (
        'mmseg::deeplabv3plus/'
        'deeplabv3plus_r50-d8_4xb2-40k_cityscapes-512x1024.py', {}, None,
        SEG_IMAGES, None),
}


def case_config(name: str, work_dir: str) -> Tuple[str, Dict[str, Any]]:
    """The case's config file and options (a ``mmseg::`` case is the
    config mmseg ships, through ``swap_backbone(cfg, 'tiny')``, written to
    ``work_dir``, its test scale that of the ADE20K configs)."""
    config, options = CASES[name][:2]
    if not config.startswith('mmseg::'):
        return osp.join(REPO_ROOT, config), dict(options)
    import mmseg
    from mmengine.config import Config
    from convnext_backbone import swap_backbone
    shipped = osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs',
                       config[len('mmseg::'):])
    cfg = swap_backbone(Config.fromfile(shipped), 'tiny')
    pipeline = cfg.test_dataloader.dataset.pipeline
    for step in pipeline:
        if step['type'] == 'Resize':
            step['scale'] = (2048, 512)
    cfg.test_dataloader.dataset.pipeline = pipeline
    path = osp.join(work_dir, f'{name}.py')
    cfg.dump(path)
    return path, dict(options)


def random_checkpoint(config: str, options: Dict[str, Any], init: dict,
                      path: str) -> str:
    """The model's weights after ``init_weights`` with ``init`` as the box
    head's ``init_cfg`` (no ImageNet download: the backbone's is dropped)."""
    from tools.lib.deploy import build_model, load_config
    options = dict(options, **{'model.backbone.init_cfg': None,
                               'model.bbox_head.init_cfg': init})
    torch.manual_seed(0)
    model = build_model(load_config(config, options), None)
    model.init_weights()
    torch.save({'state_dict': dict(model.state_dict())}, path)
    return path


def run_case(name: str, work_dir: str, repeat: int) -> Dict[str, Any]:
    from tools.lib.deploy import deploy, synthetic_image
    config, options = case_config(name, work_dir)
    shape, sizes, init = CASES[name][2:]
    ckpt = None
    if init is not None:
        ckpt = random_checkpoint(config, options, init,
                                 osp.join(work_dir, f'{name}.pth'))
    torch.manual_seed(0)
    images = [synthetic_image(size, seed) for seed, size in enumerate(sizes)]
    report = deploy(config, ckpt, osp.join(work_dir, name), images,
                    shape=shape, cfg_options=options, repeat=repeat)
    return report


def row(name: str, report: Dict[str, Any]) -> List[str]:
    images = report['images']
    lat = report['latency_ms']

    def ms(values):
        return ' / '.join(f'{v:.0f}' for v in values) or '-'

    return [
        name, ' / '.join('x'.join(map(str, r['input_shape']))
                         for r in images),
        ' / '.join(f"{r['agreement']:.3f}" for r in images) +
        (f" ({images[0]['reference']} / {images[1]['reference']} dets)"
         if 'reference' in images[0] else ''),
        f"{max((r.get('max_score_diff', 0) for r in images), default=0):.1e}",
        ms(lat['pytorch']), ms(lat['bundle']),
        f"{report['export_s']:.0f}", f"{report['bundle']['mb']:.0f}"]


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n', 1)[1])
    parser.add_argument('--models', nargs='+', choices=sorted(CASES),
                        default=list(CASES))
    parser.add_argument('--repeat', type=int, default=3,
                        help='timed predictions per runtime (median)')
    parser.add_argument('--json', metavar='PATH',
                        help='write the reports here, after each model; '
                        'the entries of models not run are kept')
    args = parser.parse_args(argv)
    from tools.lib.measure import markdown_table
    reports, rows = {}, []
    if args.json and osp.isfile(args.json):
        with open(args.json) as f:
            reports = json.load(f)
    with tempfile.TemporaryDirectory(prefix='deploy_figures_') as work_dir:
        for name in args.models:
            report = run_case(name, work_dir, args.repeat)
            report.pop('disagreements', None)
            reports[name] = report
            rows.append(row(name, report))
            print(markdown_table(HEADER, rows[-1:]), flush=True)
            if args.json:
                with open(args.json, 'w') as f:
                    json.dump(reports, f, indent=1)
    print(markdown_table(HEADER, rows))
    return reports


HEADER = ['model (random weights)', 'input H x W', 'agreement',
          'max score diff', 'PyTorch ms', 'bundle ms', 'export s',
          'bundle MB']

if __name__ == '__main__':
    main()
