"""The CPU demo: toy data in, a ConvNeXt detector and segmentor trained,
evaluated with the real metrics, predictions and loss curves drawn.

    make demo                       # = python tools/demo.py
    python tools/demo.py --only det --work-dir work_dirs/toy

It is the same path as ``tools/train.py`` / ``tools/test.py`` on
``configs/toy/*.py`` (:mod:`tools.lib.prepare` and mmengine's
Runner); this script only chains the steps and summarises them.
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Sequence

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmengine.config import Config  # noqa: E402

from tools.lib.prepare import prepare_test_cfg, prepare_train_cfg  # noqa
from tools.lib.runner import build_runner, dump_metrics  # noqa: E402
from tools.lib.toy_data import generate_toy_data, toy_cfg_options  # noqa

TASKS = {
    'det': dict(config='configs/toy/mask_rcnn_convnext_atto_toy.py',
                metrics=('coco/bbox_mAP', 'coco/segm_mAP',
                         'coco/bbox_mAP_50'),
                data='toy_coco'),
    'seg': dict(config='configs/toy/upernet_convnext_atto_toy.py',
                metrics=('mIoU', 'aAcc'), data='toy_ade'),
}


def loss_history(work_dir: str) -> List[Dict[str, float]]:
    """Training records (iter, loss, ...) of the newest run in work_dir, as
    mmengine's LocalVisBackend wrote them to ``vis_data/scalars.json``."""
    runs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                     'scalars.json')))
    if not runs:
        return []
    with open(runs[-1]) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if 'loss' in r]


def plot_losses(histories: Dict[str, List[Dict[str, float]]],
                path: str) -> None:
    """One panel per task: total loss and its parts against iterations."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(histories), figsize=(6 * len(histories),
                                                         4), squeeze=False)
    for ax, (task, records) in zip(axes[0], histories.items()):
        steps = [r['step'] for r in records]
        keys = [k for k in records[0] if 'loss' in k] if records else []
        for key in keys:
            ax.plot(steps, [r.get(key) for r in records], label=key,
                    linewidth=2 if key == 'loss' else 1)
        ax.set_title(f'{task}: training losses')
        ax.set_xlabel('iteration')
        ax.set_yscale('log')
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train_and_test(config: str,
                   work_dir: str,
                   cfg_options: Optional[dict] = None,
                   show_dir: Optional[str] = None,
                   validate: bool = True) -> Dict[str, float]:
    """Train ``config`` and test its final checkpoint, as the tools do.

    Args:
        config (str): Config path.
        work_dir (str): Logs, checkpoints, metrics.json.
        cfg_options (dict, optional): As ``--cfg-options``.
        show_dir (str, optional): Draw the test predictions here.
        validate (bool): Keep the config's validation during training
            (the toy configs validate the final model, which the test
            repeats). Defaults to True.

    Returns:
        dict: The test metrics.
    """
    cfg = Config.fromfile(config)
    train_options = dict(cfg_options or {})
    if not validate:
        train_options.update(val_cfg=None, val_dataloader=None,
                             val_evaluator=None)
    train_cfg = prepare_train_cfg(cfg, work_dir=work_dir,
                                  cfg_options=train_options)
    runner = build_runner(train_cfg)
    runner.train()
    checkpoint = osp.join(work_dir, 'last_checkpoint')
    with open(checkpoint) as f:
        checkpoint = f.read().strip()
    test_cfg = prepare_test_cfg(cfg, checkpoint, work_dir=work_dir,
                                show_dir=show_dir, cfg_options=cfg_options)
    metrics = build_runner(test_cfg).test()
    dump_metrics(metrics, osp.join(work_dir, 'metrics.json'))
    return metrics


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/toy')
    parser.add_argument('--data-root', default='data',
                        help='toy sets are generated here if missing')
    parser.add_argument('--only', choices=sorted(TASKS), nargs='+',
                        default=sorted(TASKS))
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, dict]:
    args = parse_args(argv)
    os.chdir(REPO_ROOT)  # configs name data/ relative to the repo
    start = time.time()
    generate_toy_data(root=args.data_root)
    results, histories, timings = {}, {}, {}
    for task in args.only:
        spec = TASKS[task]
        work_dir = osp.join(args.work_dir, task)
        options = {} if args.data_root == 'data' else toy_cfg_options(
            osp.join(args.data_root, spec['data']), coco=task == 'det')
        t0 = time.time()
        results[task] = train_and_test(
            spec['config'], work_dir, cfg_options=options,
            show_dir=osp.join(work_dir, 'predictions'), validate=False)
        timings[task] = time.time() - t0
        histories[task] = loss_history(work_dir)
    plot = osp.join(args.work_dir, 'loss_curves.png')
    plot_losses(histories, plot)

    lines = ['', '=' * 64, 'convnext_backbone demo: summary', '=' * 64]
    for task in args.only:
        spec, metrics = TASKS[task], results[task]
        # mmdet reports AP in [0, 1], mmseg IoU and accuracy in percent
        shown = ', '.join(
            f'{k}={metrics[k]:.3f}' if k.startswith('coco/') else
            f'{k}={metrics[k]:.1f}%' for k in spec['metrics'] if k in metrics)
        first, last = histories[task][0], histories[task][-1]
        lines += [
            f"{task}: {spec['config']}",
            f"  loss {first['loss']:.3f} (iter {first['step']}) -> "
            f"{last['loss']:.3f} (iter {last['step']}); "
            f'{timings[task] / 60:.1f} min',
            f'  {shown}',
            f'  predictions: {osp.join(args.work_dir, task, "predictions")}',
            f'  metrics: {osp.join(args.work_dir, task, "metrics.json")}',
        ]
    lines += [f'loss curves: {plot}',
              f'total: {(time.time() - start) / 60:.1f} min', '=' * 64]
    print('\n'.join(lines))
    return results


if __name__ == '__main__':
    main()
