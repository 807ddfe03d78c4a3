"""Where a whole prediction spends its time: PyTorch's ``test_step`` in the
exact fp32 setting (``torch.profiler``) against the deploy bundle's
self-contained graph in onnxruntime (its own profiler; image to
predictions, as ``tools/deploy.py`` writes it), op times summed by op type
(random weights, one synthetic image; docs/inference_speed.md).

    python tools/analysis/profile_model.py configs/upernet_convnext_t_512.py 512 512
    python tools/analysis/profile_model.py configs/mask_rcnn_convnext_t.py 800 1333
"""
import argparse
import collections
import copy
import json
import os.path as osp
import sys
import tempfile
from typing import Dict

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402


def _print(title: str, ops: Dict[str, float], top: int) -> None:
    total = sum(ops.values())
    print(f'{title}: {total:.0f} ms')
    for name, ms in collections.Counter(ops).most_common(top):
        print(f'  {name:32s} {ms:8.0f} ms {ms / total:6.1%}')


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('height', type=int)
    parser.add_argument('width', type=int)
    parser.add_argument('--top', type=int, default=8)
    args = parser.parse_args(argv)
    import onnxruntime as ort
    from mmengine.registry import DefaultScope
    from convnext_backbone import optimize_for_inference
    from tools.lib.deploy import (build_model, load_config, synthetic_image,
                                  test_batch)
    from tools.lib.deploy.bundle import bundle_module, write_bundle
    options = {'model.backbone.init_cfg': None}
    cfg = load_config(args.config, options)
    if cfg.model.get('test_cfg', {}).get('mode') == 'slide':
        cfg.model.test_cfg.mode = 'whole'  # one forward over the image
    torch.manual_seed(0)
    model = build_model(cfg, None)
    image = synthetic_image((args.height, args.width))
    data = test_batch(cfg, image)
    work_dir = tempfile.mkdtemp(prefix='profile_')
    with DefaultScope.overwrite_default_scope(cfg.default_scope), \
            torch.no_grad():
        packed = model.data_preprocessor(copy.deepcopy(data), False)
        print('input', tuple(packed['inputs'].shape))
        write_bundle(work_dir, cfg, model, data,
                     dict(classes=[], palette=[]))
        fast = optimize_for_inference(copy.deepcopy(model), 'exact')
        fast.test_step(copy.deepcopy(data))  # warm-up
        with torch.profiler.profile() as prof:
            fast.test_step(copy.deepcopy(data))
        _print('PyTorch exact, tensor path and post-processing (test_step, '
               'self CPU time)',
               {e.key: e.self_cpu_time_total / 1e3
                for e in prof.key_averages()}, args.top)
    # the bundle's graph, fed as its predict.py feeds it
    feeds = bundle_module(work_dir).Predictor(
        work_dir, providers=['CPUExecutionProvider']).feeds(image)[0]
    options = ort.SessionOptions()
    options.enable_profiling = True
    # the profile's JSON goes beside the graph, not into the cwd
    options.profile_file_prefix = osp.join(work_dir, 'ort_profile')
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    session = ort.InferenceSession(osp.join(work_dir, 'end2end.onnx'),
                                   options,
                                   providers=['CPUExecutionProvider'])
    session.run(None, feeds)  # warm-up
    session.run(None, feeds)
    ops: Dict[str, float] = collections.Counter()
    with open(session.end_profiling()) as f:
        events = json.load(f)
    runs = sorted(e['ts'] for e in events if e.get('name') == 'model_run')
    second = runs[len(runs) // 2]  # the second call
    for e in events:
        if (e.get('cat') == 'Node' and e['ts'] >= second
                and e['name'].endswith('_kernel_time')):
            ops[e['args']['op_name']] += e['dur'] / 1e3
    _print('onnxruntime, the exported graphs (the bundle\'s one graph, '
           'post-processing included; kernel time; Loop bodies counted in '
           'their Loop)', ops, args.top)


if __name__ == '__main__':
    main()
