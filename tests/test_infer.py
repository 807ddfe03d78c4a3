"""tools/infer.py on a fresh folder of images, as a user runs it.

- detection (toy Mask R-CNN, ConvNeXt-atto, random weights saved as a
  Runner would) from the command line: drawings, JSON with boxes, scores,
  labels, class names and masks as RLE that decode to the image size;
- segmentation (toy UperNet): drawings, label PNGs at the image size and
  JSON classes whose pixel counts sum to the image;
- bad input (a missing image, a file that is no image, an empty folder, a
  checkpoint of another config, a missing config) ends with one
  ``error: ...`` line and a non-zero exit, before any model is built where
  the input alone is wrong.
"""
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from helpers import CONFIG_DIR, randomize_  # noqa: F401  (sys.path set up)

REPO = osp.dirname(CONFIG_DIR)
INFER = osp.join(REPO, 'tools', 'infer.py')
SIZES = {'wide': (48, 80), 'square': (64, 64)}  # (h, w): one non-square


def toy_config(tmp_path, name: str, **overrides) -> str:
    """A config file inheriting a toy config by absolute path."""
    path = tmp_path / f'{name}_infer.py'
    lines = [f"_base_ = {osp.join(CONFIG_DIR, 'toy', name + '.py')!r}"]
    lines += [f'{k} = {v!r}' for k, v in overrides.items()]
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def save_random_checkpoint(config: str, path: str) -> dict:
    """The config's model with random weights, saved with the dataset meta
    a Runner stores; returns that meta."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    import importlib
    cfg = Config.fromfile(config)
    scope = cfg.default_scope
    init_default_scope(scope)
    models = importlib.import_module(f'{scope}.registry').MODELS
    torch.manual_seed(0)
    model = revert_sync_batchnorm(models.build(cfg.model))
    meta = dict(cfg.test_dataloader.dataset.metainfo)
    stored = dict(meta)
    if scope == 'mmseg':  # what mmseg's datasets add to a Runner's meta
        stored.update(label_map=None, reduce_zero_label=False)
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=stored)), path)
    return meta


def image_folder(tmp_path) -> str:
    folder = tmp_path / 'images'
    folder.mkdir()
    rng = np.random.RandomState(0)
    for name, (h, w) in SIZES.items():
        img = rng.randint(0, 256, (h, w, 3), dtype=np.uint8)
        cv2.rectangle(img, (8, 8), (w // 2, h // 2), (220, 40, 40), -1)
        assert cv2.imwrite(str(folder / f'{name}.jpg'), img)
    (folder / 'notes.txt').write_text('not an image; ignored in a folder')
    return str(folder)


@pytest.fixture(scope='module')
def det_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('infer_det')
    # Every box the random head scores goes through: instances to check.
    config = toy_config(tmp, 'mask_rcnn_convnext_atto_toy',
                        model=dict(test_cfg=dict(rcnn=dict(score_thr=0.0))))
    ckpt = str(tmp / 'det.pth')
    meta = save_random_checkpoint(config, ckpt)
    return config, ckpt, meta


def run_cli(args, timeout=300) -> subprocess.CompletedProcess:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    return subprocess.run([sys.executable, INFER] + args, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_detection_end_to_end(det_setup, tmp_path):
    from pycocotools import mask as mask_util
    config, ckpt, meta = det_setup
    images = image_folder(tmp_path)
    out = tmp_path / 'out'
    proc = run_cli([config, ckpt, images, '--out-dir', str(out),
                    '--device', 'cpu', '--score-thr', '0'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, (h, w) in SIZES.items():
        vis = cv2.imread(str(out / 'vis' / f'{name}.jpg'))
        assert vis is not None and vis.shape[:2] == (h, w)
        record = json.loads((out / 'preds' / f'{name}.json').read_text())
        assert record['task'] == 'det'
        assert (record['height'], record['width']) == (h, w)
        assert record['image'].endswith(f'{name}.jpg')
        instances = record['instances']
        assert instances, 'score_thr 0 keeps every scored box'
        scores = [i['score'] for i in instances]
        assert all(0 <= s <= 1 for s in scores)
        for inst in instances:
            assert 0 <= inst['label'] < len(meta['classes'])
            assert inst['class_name'] == meta['classes'][inst['label']]
            x1, y1, x2, y2 = inst['bbox']
            assert -1 <= x1 <= x2 <= w + 1 and -1 <= y1 <= y2 <= h + 1
            rle = dict(inst['mask'], counts=inst['mask']['counts'].encode())
            assert mask_util.decode(rle).shape == (h, w)
    assert sorted(os.listdir(out / 'preds')) == [
        'square.json', 'wide.json']


def test_segmentation_end_to_end(tmp_path):
    from tools.infer import main
    config = toy_config(tmp_path, 'upernet_convnext_atto_toy')
    ckpt = str(tmp_path / 'seg.pth')
    meta = save_random_checkpoint(config, ckpt)
    images = image_folder(tmp_path)
    wide = osp.join(images, 'wide.jpg')
    out = tmp_path / 'out'
    # A folder and one of its images again: the name clash is refused...
    with pytest.raises(SystemExit) as exc:
        main([config, ckpt, images, wide, '--out-dir', str(out)])
    assert 'would write the same outputs' in str(exc.value.code)
    # ...a folder alone is fine.
    assert main([config, ckpt, images, '--out-dir', str(out),
                 '--device', 'cpu', '--no-progress']) == 0
    # --fast exact: the same label maps (tools/infer.py's conversion)
    fast = tmp_path / 'out_fast'
    assert main([config, ckpt, images, '--out-dir', str(fast),
                 '--device', 'cpu', '--no-progress', '--fast', 'exact']) == 0
    with pytest.raises(SystemExit) as exc:  # checked before the model
        main([config, ckpt, images, '--out-dir', str(fast), '--device',
              'cpu', '--fast', 'fp16'])
    assert str(exc.value.code).startswith('error: --fast fp16: ')
    for name, (h, w) in SIZES.items():
        same = cv2.imread(str(fast / 'preds' / f'{name}.png'),
                          cv2.IMREAD_UNCHANGED) == cv2.imread(
            str(out / 'preds' / f'{name}.png'), cv2.IMREAD_UNCHANGED)
        assert same.mean() >= 0.999, name
        vis = cv2.imread(str(out / 'vis' / f'{name}.jpg'))
        assert vis is not None and vis.shape[:2] == (h, w)
        label = cv2.imread(str(out / 'preds' / f'{name}.png'),
                           cv2.IMREAD_UNCHANGED)
        assert label.shape == (h, w) and label.dtype == np.uint8
        record = json.loads((out / 'preds' / f'{name}.json').read_text())
        assert record['task'] == 'seg'
        assert record['label_png'] == f'preds/{name}.png'
        counts = {c['label']: c['pixels'] for c in record['classes']}
        assert sum(counts.values()) == h * w
        values, pixels = np.unique(label, return_counts=True)
        assert counts == dict(zip(values.tolist(), pixels.tolist()))
        for c in record['classes']:
            assert c['class_name'] == meta['classes'][c['label']]


@pytest.mark.parametrize('case', ['missing image', 'not an image',
                                  'empty folder', 'missing config'])
def test_bad_input_is_one_error_line(det_setup, tmp_path, case, capsys):
    from tools.infer import main
    config, ckpt, _ = det_setup
    if case == 'missing image':
        args, expected = [config, ckpt, str(tmp_path / 'nope.jpg')], \
            'does not exist'
    elif case == 'not an image':
        bad = tmp_path / 'bad.jpg'
        bad.write_text('plain text with an image name')
        args, expected = [config, ckpt, str(bad)], 'is not an image'
    elif case == 'empty folder':
        (tmp_path / 'empty').mkdir()
        (tmp_path / 'empty' / 'readme.txt').write_text('x')
        args, expected = [config, ckpt, str(tmp_path / 'empty')], \
            'holds no image'
    else:
        args, expected = [str(tmp_path / 'nope.py'), ckpt,
                          str(tmp_path)], 'config file'
    with pytest.raises(SystemExit) as exc:
        main(args + ['--out-dir', str(tmp_path / 'out')])
    message = str(exc.value.code)
    assert message.startswith('error: ') and expected in message
    assert '\n' not in message
    assert not (tmp_path / 'out').exists()


def test_checkpoint_of_another_config_is_refused(det_setup, tmp_path):
    # A V1 checkpoint given with the V2 config of the same detector: the
    # V2 blocks' GRN weights are missing and layer scale is unexpected; the
    # backbone names the versions (on every load path, mmengine's too).
    config, ckpt, _ = det_setup
    v2 = toy_config(tmp_path, 'mask_rcnn_convnextv2_atto_toy')
    image = osp.join(image_folder(tmp_path), 'square.jpg')
    proc = run_cli([v2, ckpt, image, '--out-dir', str(tmp_path / 'out'),
                    '--device', 'cpu'])
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines()
              if line.startswith('error: ')]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert 'does not fit config' in errors[0]
    assert "are ConvNeXt V1" in errors[0] and "use type='ConvNeXt'" in errors[0]
    assert 'Traceback' not in proc.stderr


def test_undecodable_image_is_skipped_with_an_error(det_setup, tmp_path,
                                                    capsys):
    # A file that starts like a JPEG but is cut short: found only when it
    # is decoded; the other images are still predicted, the exit is 1.
    from tools.infer import main
    config, ckpt, _ = det_setup
    images = image_folder(tmp_path)
    data = open(osp.join(images, 'square.jpg'), 'rb').read()
    with open(osp.join(images, 'cut.jpg'), 'wb') as f:
        f.write(data[:20])
    out = tmp_path / 'out'
    assert main([config, ckpt, images, '--out-dir', str(out),
                 '--device', 'cpu', '--no-progress']) == 1
    err = capsys.readouterr().err
    assert "error: '" in err and 'cut.jpg' in err and 'could not be ' \
        'decoded' in err
    assert sorted(os.listdir(out / 'preds')) == ['square.json', 'wide.json']
