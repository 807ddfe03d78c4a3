"""Checks that fail early, before any model is built: dataset paths and
the channels a neck / decode head expects of the backbone."""
import os
import os.path as osp
from typing import Any, Iterator, Sequence, Tuple

from mmengine.config import Config

from convnext_backbone.consumers import find_consumers
from convnext_backbone.presets import (VERSION_CLASSES, normalize_out_indices,
                                       out_channels)

from .errors import ConfigPrepareError, DatasetNotFoundError

#: Where each dataset type expects its files, for the missing-data error.
DATASET_LAYOUTS = {
    'CocoDataset':
    'COCO 2017: <data_root>/annotations/instances_{train,val}2017.json, '
    '<data_root>/train2017/, <data_root>/val2017/ (default data_root: '
    'data/coco/)',
    'ADE20KDataset':
    'ADE20K: <data_root>/images/{training,validation}/ and '
    '<data_root>/annotations/{training,validation}/ (default data_root: '
    'data/ade/ADEChallengeData2016)',
}


def is_local_path(path: Any) -> bool:
    return isinstance(path, str) and bool(path) and '://' not in path


def _dataset_cfgs(dataset: Any, where: str) -> Iterator[Tuple[dict, str]]:
    """The leaf dataset configs below wrappers (Repeat/Concat/...)."""
    if not isinstance(dataset, dict):
        return
    if isinstance(dataset.get('dataset'), dict):
        yield from _dataset_cfgs(dataset['dataset'], f'{where}.dataset')
    elif isinstance(dataset.get('datasets'), (list, tuple)):
        for i, sub in enumerate(dataset['datasets']):
            yield from _dataset_cfgs(sub, f'{where}.datasets.{i}')
    else:
        yield dataset, where


def _evaluator_ann_files(evaluator: Any,
                         where: str) -> Iterator[Tuple[str, str]]:
    is_list = isinstance(evaluator, (list, tuple))
    metrics = evaluator if is_list else [evaluator]
    for i, metric in enumerate(metrics):
        if isinstance(metric, dict) and is_local_path(metric.get('ann_file')):
            key = f'{where}.{i}' if is_list else where
            yield metric['ann_file'], f'{key}.ann_file'


def check_dataset_paths(cfg: Config, phases: Sequence[str]) -> None:
    """Check that the files and folders the datasets will read exist.

    Args:
        cfg (Config): The prepared config.
        phases (Sequence[str]): Any of ``'train'``, ``'val'``, ``'test'``:
            ``<phase>_dataloader`` (``data_root`` joined with ``ann_file``
            and every ``data_prefix`` entry) and ``<phase>_evaluator``
            (``ann_file``) are checked. Remote paths (``s3://...``) and
            datasets with ``backend_args`` are not.

    Raises:
        DatasetNotFoundError: Lists every missing path, where the data is
            expected and the ``--cfg-options`` that point elsewhere.
    """
    missing, loaders, evaluators, types, roots = [], [], [], [], []
    for phase in phases:
        loader = cfg.get(f'{phase}_dataloader')
        if not isinstance(loader, dict):
            continue
        loaders.append(f'{phase}_dataloader')
        for dataset, where in _dataset_cfgs(
                loader.get('dataset'), f'{phase}_dataloader.dataset'):
            if dataset.get('backend_args'):
                continue
            types.append(dataset.get('type'))
            root = dataset.get('data_root') or ''
            roots.append(root)
            if root and not is_local_path(root):
                continue
            entries = []
            if is_local_path(dataset.get('ann_file')):
                entries.append((f'{where}.ann_file', dataset['ann_file']))
            for key, value in (dataset.get('data_prefix') or {}).items():
                if is_local_path(value):
                    entries.append((f'{where}.data_prefix.{key}', value))
            for key, value in entries:
                path = osp.join(root, value)
                if not osp.exists(path):
                    missing.append(f'  {osp.abspath(path)}\n    ({key}='
                                   f"'{value}' under data_root='{root}')")
        evaluator = cfg.get(f'{phase}_evaluator')
        for ann_file, key in _evaluator_ann_files(evaluator,
                                                  f'{phase}_evaluator'):
            evaluators.append((key, ann_file))
            if not osp.exists(ann_file):
                missing.append(f"  {osp.abspath(ann_file)}\n    ({key})")
    if not missing:
        return
    layouts = [DATASET_LAYOUTS[t] for t in dict.fromkeys(types)
               if t in DATASET_LAYOUTS]
    expected = ('Expected layout: ' + '; '.join(layouts) +
                '.\n') if layouts else ''
    new_ann_files = []
    for key, ann_file in evaluators:
        # the metric's own copy of a path below data_root
        root = next((r for r in roots if r and ann_file.startswith(r)), None)
        rest = (ann_file[len(root):].lstrip('/')
                if root else osp.basename(ann_file))
        new_ann_files.append(f'{key}=/path/to/data/{rest}')
    options = ' '.join(
        [f'{name}.dataset.data_root=/path/to/data'
         for name in loaders] + new_ann_files)
    raise DatasetNotFoundError(
        'dataset not found; these paths do not exist (relative ones are '
        f'relative to {os.getcwd()}):\n' + '\n'.join(missing) + '\n' +
        expected + 'Put (or symlink) the data there, or point the config '
        f'at it:\n  --cfg-options {options}')


def check_backbone_channels(cfg: Config) -> None:
    """What reads the backbone (a neck, else the heads: see
    :func:`convnext_backbone.consumers.find_consumers`, as ``swap_backbone``
    does) must take the channels the ConvNeXt (V1 or V2) gives.

    Without this check a mismatch surfaces as a convolution shape error deep
    in the first forward pass.

    Args:
        cfg (Config): A config whose ``model.backbone`` may be ConvNeXt
            (other backbones are not checked).

    Raises:
        ConfigPrepareError: Names the key, both channel lists and the fix.
    """
    model = cfg.get('model')
    backbone = model.get('backbone') if isinstance(model, dict) else None
    if not isinstance(backbone, dict):
        return
    # 'mmengine.ConvNeXt' is ours by its root-registry name; another scope's
    # ConvNeXt (mmpretrain's) is not.
    scope, _, name = str(backbone.get('type')).rpartition('.')
    if scope not in ('', 'mmengine') or name not in VERSION_CLASSES.values():
        return
    arch = backbone.get('arch', 'tiny')
    indices = normalize_out_indices(backbone.get('out_indices', (0, 1, 2, 3)))
    out = out_channels(arch, indices)
    for path, node, is_neck in find_consumers(model):
        if 'in_channels' not in node:
            continue
        key = f'{path}.in_channels'
        in_index = node.get('in_index', -1)  # mmseg's default: the last
        if is_neck:  # a neck takes every output, in order
            expected = out
        elif isinstance(in_index, (list, tuple)):
            expected = [out[i] for i in in_index]
        else:
            expected = out[in_index]
        in_channels = node['in_channels']
        got = list(in_channels) if isinstance(in_channels,
                                              (list, tuple)) else in_channels
        if got != expected:
            raise ConfigPrepareError(
                f'{key}={got} does not match the backbone: '
                f'{name}(arch={arch!r}, out_indices={tuple(indices)}) '
                f'gives {out}; set {key}={expected} (derive it from '
                'convnext_backbone.presets.out_channels(arch, out_indices))')

