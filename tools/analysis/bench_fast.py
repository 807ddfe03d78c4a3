"""The ``model`` mode's ``--fast`` rows: one row per inference setting of a
whole detector / segmentor (``none`` = eager, and the modes of
:func:`convnext_backbone.optimize_for_inference`; ``--onnxruntime`` adds the
bundle of tools/deploy.py), each timed on the tensor path
(``mode='tensor'``, the network alone; the bundle's graph) and on the
whole prediction (``test_step``: preprocessing, sliding windows,
post-processing), all in the same interleaved rounds; plus where one
prediction's time goes (backbone, neck, heads, the rest) and how far each
row's tensor outputs are from eager's.
"""
import copy
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config

from convnext_backbone.inference import FAST_MODES, optimize_for_inference
from tools.lib.measure import (interleaved_times, max_relative_error,
                               median, synchronize)

#: ``--fast`` choices: ``none`` names the eager row.
SETTINGS = ('none', ) + FAST_MODES
PATHS = ('tensor', 'test_step')
#: Parts of a prediction, timed by wrapping these methods of the model's
#: children (``predict`` of a head includes its post-processing: proposal
#: NMS, box decoding, mask pasting, resizing the logits to the input).
PARTS = (('backbone', 'backbone', 'forward'), ('neck', 'neck', 'forward'),
         ('rpn_head', 'rpn_head', 'predict'),
         ('roi_head', 'roi_head', 'predict'),
         ('decode_head', 'decode_head', 'predict'))


class BundleRow:
    """The ``onnxruntime`` row: the bundle ``tools/deploy.py`` writes (one
    self-contained graph, image to predictions; docs/deploy.md) and its
    ``Predictor``. Its ``tensor`` path is the graph alone on inputs the
    bundle preprocessed (post-processing included: the graph has it), its
    ``test_step`` the ``Predictor`` on the batch's images (normalise, pad,
    the graph, mask pasting; no resize: a benchmark batch is what the test
    pipeline gives, resized already). Its outputs are predictions, not the
    networks' tensors: :meth:`agreement` compares them with a row's
    ``test_step`` as tools/deploy.py does.

    Args:
        predictor: The bundle's ``Predictor``.
        images (list[np.ndarray]): The batch's images, BGR ``H x W x 3``.
    """

    def __init__(self, predictor: object, images: List[object]) -> None:
        predictor.spec['preprocess']['resize'] = None
        self.predictor = predictor
        self.images = images
        self.feeds = [predictor.feeds(image)[0] for image in images]

    def agreement(self, samples: Sequence[object]) -> float:
        """The lowest agreement (:func:`tools.lib.deploy.compare.agreement`)
        of this row's predictions with ``samples`` (a ``test_step``'s)."""
        from tools.lib.deploy.compare import agreement, reference_predictions
        preds = self.steps()['test_step']()
        return min(agreement(reference_predictions(sample), pred)['agreement']
                   for sample, pred in zip(samples, preds))

    def steps(self) -> Dict[str, Callable[[], object]]:
        """:func:`path_steps` of this row."""

        def tensor():
            return [self.predictor.session.run(None, feeds)
                    for feeds in self.feeds]

        def test_step():
            return [self.predictor(image) for image in self.images]

        return dict(tensor=tensor, test_step=test_step,
                    features=lambda: None)


def onnxruntime_row(cfg: Config, model: nn.Module, data: dict,
                    device: torch.device) -> Tuple[Optional[BundleRow], str]:
    """The ``onnxruntime`` row (:class:`BundleRow`: the model exported by
    tools/deploy.py's code into a temporary bundle), or None and why not."""
    if device.type != 'cpu':
        return None, 'onnxruntime row: CPU only (the CPU execution provider)'
    try:
        from tools.lib.deploy import DeployError
        from tools.lib.deploy.bundle import load_predictor, write_bundle
        # the session holds the graph once loaded: the files can go
        with tempfile.TemporaryDirectory(prefix='bench_onnx_') as out_dir:
            write_bundle(out_dir, cfg, model, data,
                         dict(classes=[], palette=[]))
            predictor = load_predictor(out_dir, torch.get_num_threads())
    except ImportError as exc:
        return None, (f'onnxruntime row not timed: {exc} (make deploy '
                      'installs onnx and onnxruntime)')
    except DeployError as exc:  # a model the bundle cannot express
        return None, f'onnxruntime row not timed: {exc}'
    images = [image.permute(1, 2, 0).contiguous().numpy()
              for image in data['inputs']]
    return BundleRow(predictor, images), ''


def converted(model: nn.Module, setting: str) -> nn.Module:
    """A copy of ``model`` in ``setting`` (``none``: eager, unchanged)."""
    model = copy.deepcopy(model).eval()
    return model if setting == 'none' else optimize_for_inference(
        model, setting)


def path_steps(model: nn.Module, data: dict,
               scope: str) -> Dict[str, Callable[[], object]]:
    """The two timed paths of one model on one batch, and ``features``
    (``extract_feat``: backbone and neck), compared but not timed."""
    from mmengine.registry import DefaultScope
    if isinstance(model, BundleRow):
        return model.steps()
    with DefaultScope.overwrite_default_scope(scope), torch.no_grad():
        packed = model.data_preprocessor(copy.deepcopy(data), False)

    def features():
        with DefaultScope.overwrite_default_scope(scope), torch.no_grad():
            return model.extract_feat(packed['inputs'])

    def tensor():
        with DefaultScope.overwrite_default_scope(scope), torch.no_grad():
            return model(packed['inputs'], packed['data_samples'],
                         mode='tensor')

    def test_step():
        with DefaultScope.overwrite_default_scope(scope), torch.no_grad():
            return model.test_step(data)

    return dict(tensor=tensor, test_step=test_step, features=features)


def _flat(out) -> List[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for item in out for t in _flat(item)]
    return []


def tensor_error(actual, expected) -> Optional[float]:
    """Largest relative error over the tensor path's outputs (None when
    their structure differs, e.g. another number of proposals)."""
    actual, expected = _flat(actual), _flat(expected)
    if len(actual) != len(expected) or any(
            a.shape != e.shape for a, e in zip(actual, expected)):
        return None
    return max(max_relative_error(a.float(), e.float())
               for a, e in zip(actual, expected))


def time_split(model: nn.Module, step: Callable[[], object],
               device: torch.device) -> Dict[str, float]:
    """Milliseconds of each part (:data:`PARTS`) in one call of ``step``
    (summed over calls: sliding windows, cascade stages), ``rest`` (data
    preprocessing, post-processing outside the heads) and ``total``."""
    spent: Dict[str, float] = {}
    patched = []

    def timed(part, method):
        def call(*args, **kwargs):
            synchronize(device)
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                synchronize(device)
                spent[part] = spent.get(part, 0.) + \
                    (time.perf_counter() - start) * 1e3
        return call

    core = model
    while isinstance(getattr(core, 'module', None), nn.Module):
        core = core.module
    targets = [(getattr(core, child, None), part, name)
               for part, child, name in PARTS]
    if isinstance(core, BundleRow):  # the graph's session.run
        targets = [(core.predictor.session, 'onnx end2end', 'run')]
    for owner, part, name in targets:
        if owner is not None and hasattr(owner, name):
            patched.append((owner, name, owner.__dict__.get(name)))
            setattr(owner, name, timed(part, getattr(owner, name)))
    try:
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        total = (time.perf_counter() - start) * 1e3
    finally:
        for owner, name, before in patched:
            if before is None:
                delattr(owner, name)
            else:
                setattr(owner, name, before)
    spent['rest'] = total - sum(spent.values())
    spent['total'] = total
    return spent


def run_settings(model: nn.Module, settings: Sequence[str], data: dict,
                 scope: str, device: torch.device, iters: int, warmup: int,
                 onnxruntime: bool = False, cfg: Optional[Config] = None
                 ) -> Dict[str, Dict[str, object]]:
    """Every row's figures: ``tensor_ms`` and ``test_step_ms`` (medians of
    the same interleaved rounds), ``split_ms`` (one more prediction),
    ``features_max_rel_error`` and ``tensor_max_rel_error`` against the
    first row (``none`` when asked for)."""
    rows, notes = {}, {}
    for setting in settings:
        try:
            rows[setting] = converted(model, setting)
        except ValueError as exc:  # a mode this device cannot run
            notes[setting] = f'not timed: {exc}'
    if onnxruntime:
        row, note = onnxruntime_row(cfg, model, data, device)
        if row is None:
            notes['onnxruntime'] = note
        else:
            rows['onnxruntime'] = row
    steps = {(name, path): fn for name, row in rows.items()
             for path, fn in path_steps(row, data, scope).items()
             if path in PATHS}
    times = interleaved_times(steps, device, iters, warmup)
    first = path_steps(rows[next(iter(rows))], data, scope)
    reference = {path: first[path]() for path in ('tensor', 'features')}
    figures = {}
    for name, row in rows.items():
        paths = path_steps(row, data, scope)
        figures[name] = dict(
            tensor_ms=median(times[(name, 'tensor')]) * 1e3,
            test_step_ms=median(times[(name, 'test_step')]) * 1e3,
            # A detector's tensor outputs are per proposal: near-tied
            # proposal scores (random weights) may reorder them, so the
            # features (backbone + neck) are compared too.
            features_max_rel_error=tensor_error(paths['features'](),
                                                reference['features']),
            tensor_max_rel_error=tensor_error(paths['tensor'](),
                                              reference['tensor']),
            split_ms=time_split(row, paths['test_step'], device))
        if isinstance(row, BundleRow):
            figures[name]['agreement'] = row.agreement(first['test_step']())
    for name, note in notes.items():
        figures[name] = dict(note=note)
    return figures


def fast_table(result: Dict[str, object]) -> str:
    """The markdown table of :func:`run_settings`' rows: per setting the
    two paths' milliseconds, the error against eager, and the split."""
    from tools.lib.measure import markdown_table
    rows = result['rows']
    parts = [p for p, _, _ in PARTS if any(
        p in r.get('split_ms', {}) for r in rows.values())]
    parts += sorted({p for r in rows.values() for p in r.get('split_ms', {})
                     if p not in parts + ['rest', 'total']}) + ['rest']
    shape = result['shape']
    lines = []
    for name, row in rows.items():
        if 'note' in row:
            lines.append([result['config'], name] + ['-'] * (4 + len(parts)))
            continue
        errors = [row.get(key) for key in ('features_max_rel_error',
                                           'tensor_max_rel_error')]
        lines.append([result['config'], name, f"{row['tensor_ms']:.0f}",
                      f"{row['test_step_ms']:.0f}"] +
                     ['-' if e is None else f'{e:.1e}' for e in errors] +
                     # blank: a part this row does not have (the bundle
                     # has no backbone of its own to time, eager no graph)
                     [f"{row['split_ms'][p]:.0f}" if p in row['split_ms']
                      else '' for p in parts])
    table = markdown_table(
        ['config', f'setting ({shape[0]}x{shape[1]})', 'tensor ms',
         'test_step ms', 'features max rel. diff',
         'tensor max rel. diff'] + [f'{p} ms' for p in parts],
        lines)
    first = next(iter(rows))
    notes = [f'{name}: {row["note"]}' for name, row in rows.items()
             if 'note' in row]
    notes += [f"{name}: predictions agree with {first}'s test_step at "
              f"{row['agreement']:.4f} (tools/deploy.py's measure)"
              for name, row in rows.items() if 'agreement' in row]
    return '\n'.join([table] + notes)
