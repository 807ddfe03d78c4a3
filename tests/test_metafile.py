"""model-index.yml / configs/metafile.yml agree with the configs and with
docs/model_zoo.md, so the three cannot drift apart.

- every paper config (configs/*.py, configs/convnextv2/*.py) has exactly one
  entry and every entry names an existing config;
- each entry's backbone, ImageNet weights, dataset, schedule and total batch
  size are those the config resolves to;
- each entry's paper results, parameters and FLOPs are the numbers of the
  config's row in docs/model_zoo.md;
- no entry claims trained weights (none is published here).
"""
import glob
import os.path as osp

import pytest
import yaml
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DATASETS = {'CocoDataset': 'COCO', 'ADE20KDataset': 'ADE20K'}
GPUS = 8  # every paper run: 8 GPUs


def read_yaml(path: str):
    with open(osp.join(REPO, path)) as f:
        return yaml.safe_load(f)


def models():
    index = read_yaml('model-index.yml')
    entries = []
    for path in index['Import']:
        entries += read_yaml(path)['Models']
    return entries


def paper_configs():
    return sorted(
        osp.relpath(p, REPO)
        for p in glob.glob(osp.join(REPO, 'configs', '*.py')) +
        glob.glob(osp.join(REPO, 'configs', 'convnextv2', '*.py')))


def test_one_entry_per_paper_config():
    named = [m['Config'] for m in models()]
    assert sorted(named) == paper_configs()
    assert len({m['Name'] for m in models()}) == len(named)
    for m in models():
        assert m['Name'] == osp.splitext(osp.basename(m['Config']))[0]
        assert 'Weights' not in m, 'no trained checkpoint is published'
        assert m['In Collection'] in {
            c['Name'] for c in read_yaml('configs/metafile.yml')
            ['Collections']}


@pytest.mark.parametrize('entry', models(), ids=lambda m: m['Name'])
def test_entry_matches_its_config(entry):
    cfg = Config.fromfile(osp.join(REPO, entry['Config']))
    meta = entry['Metadata']
    backbone = cfg.model.backbone
    assert meta['Backbone'] == f'{backbone.type} {backbone.arch}'
    assert meta['Pretrained'] == backbone.init_cfg.checkpoint
    dataset = cfg.train_dataloader.dataset
    assert meta['Training Data'] == DATASETS[dataset.type]
    if 'Epochs' in meta:
        assert meta['Epochs'] == cfg.train_cfg.max_epochs
    else:
        assert meta['Iterations'] == cfg.train_cfg.max_iters
    assert meta['Batch Size'] == GPUS * cfg.train_dataloader.batch_size
    assert meta['Batch Size'] == cfg.auto_scale_lr.base_batch_size


def zoo_row(config: str) -> str:
    """The docs/model_zoo.md table row that links ``config``."""
    with open(osp.join(REPO, 'docs', 'model_zoo.md')) as f:
        rows = [line for line in f if line.startswith('|')
                and f'(../{config})' in line]
    assert len(rows) == 1, f'{config}: {len(rows)} rows in model_zoo.md'
    return rows[0]


@pytest.mark.parametrize('entry', [m for m in models() if m['Results']],
                         ids=lambda m: m['Name'])
def test_entry_numbers_are_the_model_zoo_row(entry):
    cells = {c.strip() for c in zoo_row(entry['Config']).split('|')}
    numbers = [v for r in entry['Results'] for v in r['Metrics'].values()]
    meta = entry['Metadata']
    numbers += [meta['Parameters (M)'], meta['FLOPs (G)']]
    for value in numbers:
        assert f'{value:.1f}' in cells, (value, sorted(cells))
    if meta['Training Data'] == 'ADE20K':  # the row's input column
        assert meta['FLOPs Input'] in cells
    else:  # the paper counts detection FLOPs at (1280, 800)
        assert meta['FLOPs Input'] == '(1280, 800)'
