"""Where a whole model's tensor path spends its time: PyTorch in the exact
fp32 setting (``torch.profiler``) against the model exported to ONNX in
onnxruntime (its own profiler), op times summed by op type (random weights,
one synthetic image; docs/inference_speed.md).

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
    from tools.lib.deploy import (build_model, export_onnx_runtime,
                                  load_config, synthetic_image, test_batch)
    options = {'model.backbone.init_cfg': None}
    cfg = load_config(args.config, options)
    if cfg.model.get('test_cfg', {}).get('mode') == 'slide':
        cfg.model.test_cfg.mode = 'whole'  # one forward over the image
    torch.manual_seed(0)
    model = build_model(cfg, None)
    data = test_batch(cfg, synthetic_image((args.height, args.width)))
    with DefaultScope.overwrite_default_scope(cfg.default_scope), \
            torch.no_grad():
        packed = model.data_preprocessor(copy.deepcopy(data), False)
        inputs, samples = packed['inputs'], packed['data_samples']
        print('input', tuple(inputs.shape))
        work_dir = tempfile.mkdtemp(prefix='profile_')
        runtime, _ = export_onnx_runtime(cfg, model, data, work_dir)
        fast = optimize_for_inference(copy.deepcopy(model), 'exact')
        fast(inputs, samples, mode='tensor')  # warm-up
        with torch.profiler.profile() as prof:
            fast(inputs, samples, mode='tensor')
        _print('PyTorch exact, tensor path (self CPU time)',
               {e.key: e.self_cpu_time_total / 1e3
                for e in prof.key_averages()}, args.top)
        for graph in runtime.graphs.values():
            options = ort.SessionOptions()
            options.enable_profiling = True
            # the profile's JSON goes beside the graphs, not into the cwd
            options.profile_file_prefix = osp.join(work_dir, 'ort_profile')
            options.intra_op_num_threads = torch.get_num_threads()
            options.log_severity_level = 3
            graph.session = ort.InferenceSession(
                graph.path, options, providers=['CPUExecutionProvider'])
        runtime.forward_tensor(inputs, samples)  # warm-up
        runtime.forward_tensor(inputs, samples)
    ops: Dict[str, float] = collections.Counter()
    for graph in runtime.graphs.values():
        with open(graph.session.end_profiling()) as f:
            events = json.load(f)
        runs = sorted(e['ts'] for e in events if e.get('name') == 'model_run')
        if not runs:
            continue
        second = runs[len(runs) // 2]  # the second call onwards
        for e in events:
            if (e.get('cat') == 'Node' and e['ts'] >= second
                    and e['name'].endswith('_kernel_time')):
                ops[e['args']['op_name']] += e['dur'] / 1e3
    _print('onnxruntime, the exported graphs (kernel time; ops between the '
           'graphs, e.g. RoIAlign, run in PyTorch)', ops, args.top)


if __name__ == '__main__':
    main()
