# Copyright (c) convnext_backbone contributors. All rights reserved.
"""Tests of the deterministic toy dataset generator.

``tools.lib.toy_data`` needs only numpy, OpenCV and pycocotools (neither
mmcv nor the plugin).
"""
import hashlib
import json
import os
import os.path as osp

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
from pycocotools.coco import COCO

from tools import generate_toy_data as tool
from tools.lib import toy_data

NUM_TRAIN, NUM_VAL = 6, 3


def _hash_tree(root):
    hashes = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                hashes[osp.relpath(path, root)] = hashlib.sha256(
                    f.read()).hexdigest()
    return hashes


@pytest.fixture(scope='module')
def toy_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('toy'))
    toy_data.generate_toy_data(
        root, seed=0, num_train=NUM_TRAIN, num_val=NUM_VAL)
    return root


def test_constants():
    assert 3 <= len(toy_data.TOY_DET_CLASSES) <= 4
    assert len(toy_data.TOY_DET_PALETTE) == len(toy_data.TOY_DET_CLASSES)
    assert toy_data.TOY_SEG_CLASSES == (
        'background', ) + toy_data.TOY_DET_CLASSES
    assert len(toy_data.TOY_SEG_PALETTE) == len(toy_data.TOY_SEG_CLASSES)
    for color in toy_data.TOY_SEG_PALETTE:
        assert len(color) == 3 and all(0 <= c <= 255 for c in color)
    assert tuple(toy_data.DEFAULT_IMG_SIZE) == (128, 128)


@pytest.mark.parametrize('config, classes, palette', [
    ('mask_rcnn_convnext_atto_toy.py', 'TOY_DET_CLASSES', 'TOY_DET_PALETTE'),
    ('upernet_convnext_atto_toy.py', 'TOY_SEG_CLASSES', 'TOY_SEG_PALETTE'),
])
def test_toy_configs_name_the_generated_classes(config, classes, palette):
    """The toy configs state the classes as data (a config must load
    without the tools); they must be those the generator draws."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(osp.dirname(osp.dirname(__file__)),
                                   'configs', 'toy', config))
    assert tuple(cfg.metainfo['classes']) == getattr(toy_data, classes)
    assert [tuple(c) for c in cfg.metainfo['palette']] == \
        [tuple(c) for c in getattr(toy_data, palette)]


def test_deterministic(tmp_path, toy_root):
    kwargs = dict(num_train=NUM_TRAIN, num_val=NUM_VAL)
    toy_data.generate_toy_data(str(tmp_path / 'a'), seed=0, **kwargs)
    hashes_a = _hash_tree(str(tmp_path / 'a'))
    hashes_ref = _hash_tree(toy_root)
    assert hashes_a == hashes_ref
    # 2 x (6 + 3) images, 9 labels, 2 jsons, 2 meta files
    assert len(hashes_a) == 2 * 9 + 9 + 2 + 2

    toy_data.generate_toy_data(str(tmp_path / 'b'), seed=1, **kwargs)
    hashes_b = _hash_tree(str(tmp_path / 'b'))
    assert set(hashes_b) == set(hashes_a)
    for rel in hashes_a:
        assert hashes_a[rel] != hashes_b[rel], rel

    # an image does not depend on how many images are generated
    toy_data.generate_toy_coco(
        str(tmp_path / 'c'), seed=0, num_train=2, num_val=1)
    hashes_c = _hash_tree(str(tmp_path / 'c'))
    for rel in ('train/toy_000000.jpg', 'train/toy_000001.jpg',
                'val/toy_000000.jpg'):
        assert hashes_c[rel] == hashes_a[osp.join('toy_coco', rel)]


def test_coco_annotations(toy_root):
    coco_root = osp.join(toy_root, toy_data.TOY_COCO_DIRNAME)
    paths = toy_data.toy_coco_paths(coco_root)
    num_cls = len(toy_data.TOY_DET_CLASSES)
    for split, num in (('train', NUM_TRAIN), ('val', NUM_VAL)):
        coco = COCO(paths[f'{split}_ann_file'])
        cats = coco.loadCats(coco.getCatIds())
        assert [c['id'] for c in cats] == list(range(1, num_cls + 1))
        assert tuple(c['name'] for c in cats) == toy_data.TOY_DET_CLASSES
        assert len(coco.getImgIds()) == num
        for img_id in coco.getImgIds():
            info = coco.loadImgs(img_id)[0]
            img = cv2.imread(
                osp.join(paths[f'{split}_img_dir'], info['file_name']))
            assert img is not None
            assert img.shape == (info['height'], info['width'], 3)
            assert (info['height'], info['width']) == (128, 128)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
            assert 1 <= len(anns) <= toy_data.MAX_OBJECTS
            union = np.zeros((info['height'], info['width']), np.int32)
            for ann in anns:
                assert 1 <= ann['category_id'] <= num_cls
                assert ann['iscrowd'] == 0
                mask = coco.annToMask(ann)
                assert mask.shape == (info['height'], info['width'])
                assert mask.sum() >= toy_data.MIN_VISIBLE_AREA
                assert mask.sum() == ann['area']
                ys, xs = np.nonzero(mask)
                tight = [
                    xs.min(),
                    ys.min(),
                    xs.max() - xs.min() + 1,
                    ys.max() - ys.min() + 1
                ]
                np.testing.assert_allclose(ann['bbox'], tight, atol=1)
                union += mask
            # visible masks of one image do not overlap
            assert union.max() <= 1


def test_ade_labels(toy_root):
    ade_root = osp.join(toy_root, toy_data.TOY_ADE_DIRNAME)
    paths = toy_data.toy_ade_paths(ade_root)
    num_labels = len(toy_data.TOY_SEG_CLASSES)
    ignored = total = 0
    seen = set()
    for split, num in (('train', NUM_TRAIN), ('val', NUM_VAL)):
        img_names = sorted(os.listdir(paths[f'{split}_img_dir']))
        ann_names = sorted(os.listdir(paths[f'{split}_ann_dir']))
        assert len(img_names) == num
        assert [n[:-4] for n in img_names] == [n[:-4] for n in ann_names]
        for img_name, ann_name in zip(img_names, ann_names):
            assert img_name.endswith('.jpg') and ann_name.endswith('.png')
            img = cv2.imread(osp.join(paths[f'{split}_img_dir'], img_name))
            label = cv2.imread(
                osp.join(paths[f'{split}_ann_dir'], ann_name),
                cv2.IMREAD_UNCHANGED)
            assert label.dtype == np.uint8 and label.ndim == 2
            assert label.shape == img.shape[:2] == (128, 128)
            values = set(np.unique(label).tolist())
            assert values <= set(range(num_labels + 1))
            assert 1 in values  # background
            assert values - {0, 1}, 'every image shows at least one shape'
            seen |= values
            ignored += int((label == 0).sum())
            total += label.size
    assert 0 < ignored / total < 0.1
    assert seen == set(range(num_labels + 1))


def test_size_range(tmp_path):
    summary = toy_data.generate_toy_coco(
        str(tmp_path), seed=0, num_train=20, num_val=1)
    with open(summary['train_ann_file']) as f:
        anns = json.load(f)['annotations']
    areas = np.array([a['bbox'][2] * a['bbox'][3] for a in anns])
    assert (areas < 16 * 16).any()
    assert (areas > 48 * 48).any()
    classes = {a['category_id'] for a in anns}
    assert classes == set(range(1, len(toy_data.TOY_DET_CLASSES) + 1))


def test_custom_size_and_rle(tmp_path):
    summary = toy_data.generate_toy_coco(
        str(tmp_path), seed=3, num_train=2, num_val=1, img_size=(96, 160))
    assert summary['img_size'] == (96, 160)
    with open(summary['val_ann_file']) as f:
        data = json.load(f)
    assert data['images'][0]['height'] == 96
    assert data['images'][0]['width'] == 160
    for ann in data['annotations']:
        seg = ann['segmentation']
        assert isinstance(seg['counts'], str)  # what mmdet expects for RLE
        assert seg['size'] == [96, 160]
        assert mask_util.decode(seg).shape == (96, 160)
    img = cv2.imread(
        osp.join(summary['train_img_dir'], data['images'][0]['file_name']))
    assert img.shape == (96, 160, 3)


def test_skip_and_overwrite(tmp_path):
    root = str(tmp_path)
    kwargs = dict(seed=0, num_train=3, num_val=2)
    first = toy_data.generate_toy_data(root, **kwargs)
    assert not first['coco']['skipped'] and not first['ade']['skipped']
    ann_file = first['coco']['train_ann_file']
    mtime = os.stat(ann_file).st_mtime_ns

    again = toy_data.generate_toy_data(root, **kwargs)
    assert again['coco']['skipped'] and again['ade']['skipped']
    assert again['coco']['train_ann_file'] == ann_file
    assert os.stat(ann_file).st_mtime_ns == mtime

    forced = toy_data.generate_toy_data(root, overwrite=True, **kwargs)
    assert not forced['coco']['skipped'] and not forced['ade']['skipped']

    # other parameters regenerate the set and remove stale files
    smaller = toy_data.generate_toy_data(
        root, seed=0, num_train=2, num_val=2, ade=False)
    assert set(smaller) == {'coco'} and not smaller['coco']['skipped']
    assert len(os.listdir(smaller['coco']['train_img_dir'])) == 2


def test_cli(tmp_path):
    root = str(tmp_path / 'data')
    results = tool.main([
        '--root', root, '--seed', '0', '--num-train', '2', '--num-val', '1',
        '--img-size', '64'
    ])
    assert set(results) == {'coco', 'ade'}
    coco = COCO(results['coco']['val_ann_file'])
    assert coco.loadImgs(coco.getImgIds())[0]['width'] == 64
    label_dir = results['ade']['train_ann_dir']
    assert len(os.listdir(label_dir)) == 2
    results = tool.main([
        '--root', root, '--num-train', '2', '--num-val', '1', '--img-size',
        '64', '--only', 'coco'
    ])
    assert set(results) == {'coco'} and results['coco']['skipped']


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError):
        toy_data.generate_toy_coco(str(tmp_path), img_size=(8, 8))
    with pytest.raises(ValueError):
        toy_data.generate_toy_ade(str(tmp_path), seed=-1)
    with pytest.raises(ValueError):
        toy_data.generate_toy_data(str(tmp_path), num_train=0)
