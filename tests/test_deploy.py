"""tools/deploy.py: the bundle (one self-contained ONNX graph, bundle.json,
predict.py) and its agreement with mmdet's / mmseg's own predictions
(``model.test_step`` of the PyTorch model).

Each model is exported once (random weights, micro backbone, narrow heads,
small images) from a non-square image whose test input is padded; the
bundle's predict.py then runs in a subprocess where torch, mmcv, mmengine,
mmdet, mmseg and convnext_backbone cannot be imported, on that image and on
images of other sizes, and its preds/*.json or *.png are compared with
``test_step`` here: >= 0.99 of the detections found again with the same
label at IoU >= 0.99 and a score within 1e-3 (and their masks at mask IoU
>= 0.99), or >= 0.99 of the pixels with the same label.
"""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from helpers import CONFIG_DIR, load, narrowed_heads, shipped, tiny_options

pytest.importorskip('onnx', reason='onnx is not installed (make deploy)')
pytest.importorskip(
    'onnxruntime', reason='onnxruntime is not installed (make deploy)')

from tools.deploy import main  # noqa: E402
from tools.lib.deploy import (DeployError, build_model, deploy,  # noqa: E402
                              load_config, synthetic_image)
from tools.lib.deploy import test_batch as make_batch  # noqa: E402
from tools.lib.deploy.compare import (agreement,  # noqa: E402
                                      reference_predictions)

# (250, 320) -> 200 x 256 in the toy pipelines (padded to 224 x 256 for the
# detectors); (200, 200) -> 256 x 256; (300, 180) -> 256 x 154 (padded to
# 256 x 160).
SIZES = ((250, 320), (200, 200), (300, 180))
MIN_AGREEMENT = 0.99
#: What the bundle must run without.
BLOCKED = ('torch', 'torchvision', 'mmcv', 'mmengine', 'mmdet', 'mmseg',
           'mmpretrain', 'convnext_backbone', 'pycocotools', 'tools')
TOY_MASK_RCNN = osp.join(CONFIG_DIR, 'toy', 'mask_rcnn_convnext_atto_toy.py')
TOY_UPERNET = osp.join(CONFIG_DIR, 'toy', 'upernet_convnext_atto_toy.py')


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp('images')
    paths = []
    for seed, size in enumerate(SIZES):
        path = str(root / f'img_{size[0]}x{size[1]}.png')
        cv2.imwrite(path, synthetic_image(size, seed))
        paths.append(path)
    return paths


@pytest.fixture(scope='module')
def blocker(tmp_path_factory):
    """A folder whose sitecustomize.py makes every name of BLOCKED
    unimportable (put on PYTHONPATH of a subprocess)."""
    root = tmp_path_factory.mktemp('blocker')
    (root / 'sitecustomize.py').write_text(
        'import sys\n'
        f'BLOCKED = {BLOCKED!r}\n\n\n'
        'class Blocker:\n'
        '    def find_spec(self, name, path=None, target=None):\n'
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError(f'{name} is blocked: the bundle must "
        "run without it')\n"
        '        return None\n\n\n'
        'sys.meta_path.insert(0, Blocker())\n')
    return str(root)


def run_isolated(blocker, args, cwd):
    """``python ARGS`` in ``cwd`` with the BLOCKED packages unimportable."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith('PYTHON')}
    env.update(PYTHONPATH=blocker, PYTHONNOUSERSITE='1',
               CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='2')
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def random_checkpoint(config, options, path, init_weights=False):
    """A checkpoint of the config's model with random weights: PyTorch's
    default initialisation, or with ``init_weights`` the config's
    ``init_cfg`` (as the Runner does)."""
    torch.manual_seed(0)
    model = build_model(load_config(config, options), None)
    if init_weights:
        model.init_weights()
    # a plain dict: the checkpoint holds tensors only (no module metadata)
    torch.save({'state_dict': dict(model.state_dict())}, path)
    return path


def paper_options(name):
    """A paper config shrunk for CPU (helpers.tiny_options), keeping up to
    100 detections per image so that the agreement covers NMS."""
    opts = tiny_options(load(name))
    opts['model.backbone.init_cfg'] = None
    if 'rcnn' in str(load(name).model.get('test_cfg', '')):
        opts['model.test_cfg.rcnn.max_per_img'] = 100
        opts['model.test_cfg.rcnn.score_thr'] = 0.0  # random weights: few
    # 192 x 256 and 192 x 192 batches (tiny_options' 166 x 100 pads both
    # images to 128 x 128)
    for step in opts['test_dataloader.dataset.pipeline']:
        if step['type'] == 'Resize':
            step['scale'] = (256, 192)
    return opts


def bundle_predictions(out_dir, image, task):
    """The isolated run's outputs for ``image`` as ``reference_predictions``
    arrays (masks decoded from the RLE with pycocotools, here)."""
    stem = osp.splitext(osp.basename(image))[0]
    with open(osp.join(out_dir, 'preds', stem + '.json')) as f:
        record = json.load(f)
    assert osp.isfile(osp.join(out_dir, 'vis', stem + '.jpg'))
    if task == 'seg':
        label_map = cv2.imread(osp.join(out_dir, record['label_png']),
                               cv2.IMREAD_UNCHANGED)
        assert sum(c['pixels'] for c in record['classes']) == label_map.size
        return dict(label_map=label_map.astype(np.int64))
    inst = record['instances']
    got = dict(boxes=np.array([i['bbox'] for i in inst],
                              np.float32).reshape(-1, 4),
               scores=np.array([i['score'] for i in inst], np.float32),
               labels=np.array([i['label'] for i in inst], np.int64))
    if inst and 'mask' in inst[0]:
        from pycocotools import mask as mask_util
        got['masks'] = np.stack([
            mask_util.decode(dict(size=i['mask']['size'],
                                  counts=i['mask']['counts'].encode()))
            for i in inst]).astype(bool)
    return got


def check_bundle(tmp_path, blocker, config, options, images, task):
    """The bundle copied elsewhere and run in isolation on ``images``;
    each image's outputs agree with ``test_step`` here. Returns each
    image's agreement, with ``input_shape`` (after the test pipeline)."""
    copy_dir = str(tmp_path / 'copied_bundle')
    shutil.copytree(str(tmp_path / 'bundle'), copy_dir)
    out_dir = str(tmp_path / 'predicted')
    proc = run_isolated(blocker, ['predict.py', *images, '--out-dir', out_dir,
                                  '--score-thr', '0'], copy_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = load_config(config, options)
    model = build_model(cfg, str(tmp_path / 'random.pth'))
    results = []
    for image in images:
        with torch.no_grad():
            sample = model.test_step(make_batch(cfg, image))[0]
        got = bundle_predictions(out_dir, image, task)
        ref = reference_predictions(sample)
        if task == 'det':  # as written to a file (tools/infer.py's rounding)
            ref['boxes'] = ref['boxes'].round(2)
            ref['scores'] = ref['scores'].round(5)
        res = agreement(ref, got)
        assert res['agreement'] >= MIN_AGREEMENT, (image, res['unmatched'])
        res['input_shape'] = list(sample.metainfo.get(
            'batch_input_shape', sample.metainfo['img_shape']))
        results.append(res)
    return results


def run(config, tmp_path, images, blocker, options=None, init_weights=False,
        task='det', **kwargs):
    """Deploy from the first image (its report checked), then the isolated
    bundle on all the images."""
    ckpt = random_checkpoint(config, options, str(tmp_path / 'random.pth'),
                             init_weights)
    report = deploy(config, ckpt, str(tmp_path / 'bundle'), images[:1],
                    cfg_options=options, repeat=0, **kwargs)
    for name in ('end2end.onnx', 'bundle.json', 'predict.py', 'README.md',
                 'report.json'):
        assert osp.isfile(tmp_path / 'bundle' / name), name
    assert not report['disagreements'], report['disagreements']
    check_graph(str(tmp_path / 'bundle' / 'end2end.onnx'))
    report['isolated'] = check_bundle(tmp_path, blocker, config, options,
                                      images, task)
    shapes = [tuple(r['input_shape']) for r in report['isolated']]
    assert len(set(shapes)) == len(images), shapes  # other sizes too
    assert any(h != w for h, w in shapes), shapes  # and a non-square one
    return report


def check_graph(path):
    """Standard ONNX domain only, subgraphs included; onnx's checker."""
    import onnx

    from tools.lib.deploy.operators import standard_domain_only
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert standard_domain_only(model) == []
    assert [o.domain for o in model.opset_import] in ([''], ['ai.onnx'])


def check_detections(report, minimum=20):
    assert report['task'] == 'detection'
    for res in report['images'] + report['isolated']:
        assert res['reference'] >= minimum, res  # enough to compare
        if 'mask_agreement' in res:
            assert res['mask_agreement'] >= MIN_AGREEMENT, res


# ------------------------------------------------------------- detectors
def test_mask_rcnn_v1(tmp_path, images, blocker):
    """Class-specific box regression (reg_class_agnostic=False), boxes
    clipped to the image inside a padded batch, masks pasted by the
    bundle."""
    assert not load_config(TOY_MASK_RCNN).model.roi_head.bbox_head.get(
        'reg_class_agnostic', False)
    report = run(TOY_MASK_RCNN, tmp_path, images, blocker)
    check_detections(report)
    assert report['isolated'][0]['input_shape'] == [224, 256]  # padded
    assert {'RoiAlign', 'NonMaxSuppression'} <= set(report['op_types'])


def test_mask_rcnn_v2_soft_nms(tmp_path, images, blocker):
    """The V2 paper config (soft-NMS in the box head: a Loop), shrunk."""
    config = osp.join(CONFIG_DIR, 'convnextv2', 'mask_rcnn_convnextv2_b.py')
    options = paper_options('convnextv2/mask_rcnn_convnextv2_b')
    assert load_config(config, options).model.test_cfg.rcnn.nms.type == \
        'soft_nms'
    report = run(config, tmp_path, images, blocker, options)
    check_detections(report)
    assert 'Loop' in report['op_types']


@pytest.mark.parametrize('agnostic', [False, True],
                         ids=['class_specific', 'class_agnostic'])
def test_cascade_mask_rcnn(tmp_path, images, blocker, agnostic):
    config = osp.join(CONFIG_DIR, 'cascade_mask_rcnn_convnext_t.py')
    options = paper_options('cascade_mask_rcnn_convnext_t')
    if agnostic:
        for i in range(3):
            options[f'model.roi_head.bbox_head.{i}.reg_class_agnostic'] = True
    heads = load_config(config, options).model.roi_head.bbox_head
    assert [h.get('reg_class_agnostic', False) for h in heads] == \
        [agnostic] * 3
    report = run(config, tmp_path, images[:2], blocker, options)
    check_detections(report)


def test_degenerate_detections(tmp_path, images, blocker):
    """No detection above the threshold, exactly one, and more RPN
    candidates than nms_pre (8 of each level's thousands)."""
    for name, options, count in (
            ('none', {'model.test_cfg.rcnn.score_thr': 0.999}, 0),
            ('one', {'model.test_cfg.rcnn.max_per_img': 1,
                     'model.test_cfg.rpn.nms_pre': 8}, 1)):
        work = tmp_path / name
        work.mkdir()
        report = run(TOY_MASK_RCNN, work, images[:2], blocker, options)
        assert [r['reference'] for r in report['isolated']] == [count] * 2
        assert [r['exported'] for r in report['isolated']] == [count] * 2


def swapped_config(tmp_path, framework, path, scale, narrow=True):
    from convnext_backbone import swap_backbone
    cfg = swap_backbone(shipped(framework, path), 'atto')
    if narrow:
        cfg.merge_from_dict(narrowed_heads(cfg.model))
    pipeline = cfg.test_dataloader.dataset.pipeline
    for step in pipeline:
        if step['type'] == 'Resize':
            step['scale'] = scale
    cfg.test_dataloader.dataset.pipeline = pipeline
    out = str(tmp_path / 'swapped.py')
    cfg.dump(out)
    return out


def test_swap_retinanet(tmp_path, images, blocker):
    """A dense detector (anchors, per-level top-k over classes, sigmoid
    scores) made by swap_backbone."""
    config = swapped_config(tmp_path, 'mmdet',
                            'retinanet/retinanet_r50_fpn_1x_coco.py',
                            (320, 256))
    # PyTorch's default init saturates the classifier (scores tied at
    # 1.0, in no defined order); RetinaNet's own puts every score at the
    # 0.01 prior, within float noise of each other. Normal(0, 0.1) spreads
    # them over (0, 1).
    options = {'model.bbox_head.init_cfg': dict(
        type='Normal', layer='Conv2d', std=0.1)}
    report = run(config, tmp_path, images, blocker, options,
                 init_weights=True)
    check_detections(report)


@pytest.mark.parametrize('path,narrow,options', [
    ('faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', True,
     {'model.test_cfg.rcnn.score_thr': 0.0,
      'model.test_cfg.rpn.max_per_img': 100}),
    ('fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py', False,
     {'model.test_cfg.score_thr': 0.0, 'model.bbox_head.stacked_convs': 1,
      'model.bbox_head.init_cfg': dict(type='Normal', layer='Conv2d',
                                       std=0.01)}),
], ids=['faster_rcnn', 'fcos'])
def test_swap_other_detectors(tmp_path, images, path, narrow, options):
    """Paths the other detector tests do not take: no mask head (NMS on
    boxes rescaled to the original image), points with distance decoding
    and centerness (FCOS's GroupNorm head kept at full width). In-process
    bundle against test_step."""
    config = swapped_config(tmp_path, 'mmdet', path, (320, 256), narrow)
    ckpt = random_checkpoint(config, options, str(tmp_path / 'r.pth'), True)
    report = deploy(config, ckpt, str(tmp_path / 'bundle'), images[:2],
                    cfg_options=options, repeat=0)
    assert not report['disagreements'], report['disagreements']
    assert [r['reference'] for r in report['images']] == [100, 100]


# ------------------------------------------------------------ segmentors
def test_upernet_whole_dynamic(tmp_path, images, blocker):
    """Stride-32 maps of 7 x 8 and 8 x 8: the pyramid pooling's bins of 3
    and 6 do not divide them, exact through the pooling rewrite; the label
    map at the original size, any size."""
    report = run(TOY_UPERNET, tmp_path, images, blocker, task='seg')
    assert report['task'] == 'segmentation'
    assert any('psp_modules' in m for m in report['rewritten_for_export'])


def test_upernet_v2_slide_any_size(tmp_path, images, blocker):
    """The V2 paper UperNet (slide mode), shrunk: mmseg's sliding windows as
    a Loop around one window's graph, for any image size (6, 9 and 6
    windows of 128 here)."""
    config = osp.join(CONFIG_DIR, 'convnextv2', 'upernet_convnextv2_b_512.py')
    options = paper_options('convnextv2/upernet_convnextv2_b_512')
    options['model.test_cfg'] = dict(mode='slide', crop_size=(128, 128),
                                     stride=(85, 85))
    assert load_config(config, options).model.backbone.type == 'ConvNeXtV2'
    report = run(config, tmp_path, images, blocker, options, task='seg')
    assert 'Loop' in report['op_types']


def test_slide_static_refuses_other_sizes(tmp_path, images, blocker):
    """--shape: the windows unrolled for one input size (2 here); the
    bundle names the --shape another image would need."""
    options = {'model.test_cfg': dict(mode='slide', crop_size=(160, 256),
                                      stride=(120, 256))}
    ckpt = random_checkpoint(TOY_UPERNET, options, str(tmp_path / 'r.pth'))
    same = [images[0], str(tmp_path / 'same_size.png')]
    cv2.imwrite(same[1], synthetic_image(SIZES[0], 7))
    report = deploy(TOY_UPERNET, ckpt, str(tmp_path / 'bundle'), same,
                    shape=(200, 256), cfg_options=options, repeat=0)
    assert not report['disagreements'], report['disagreements']
    assert 'Loop' not in report['op_types']
    proc = run_isolated(blocker, ['bundle/predict.py', images[1],
                                  '--out-dir', 'other'], str(tmp_path))
    assert proc.returncode == 1
    assert 'export again with --shape 256 256' in proc.stderr


def test_swap_deeplabv3plus(tmp_path, images):
    """ASPP's image pooling, depthwise-separable convs, the low-level
    branch (c1_in_channels): agreement of the in-process bundle."""
    config = swapped_config(
        tmp_path, 'mmseg',
        'deeplabv3plus/deeplabv3plus_r50-d8_4xb2-40k_cityscapes-512x1024.py',
        (320, 256))
    ckpt = random_checkpoint(config, None, str(tmp_path / 'random.pth'))
    report = deploy(config, ckpt, str(tmp_path / 'bundle'), images[:2],
                    repeat=0)
    assert report['task'] == 'segmentation'
    assert not report['disagreements'], report['disagreements']


# ---------------------------------------------------------- bad inputs
def test_bundle_bad_inputs(tmp_path, images, blocker):
    """predict.py: a damaged image is skipped with a message, the others
    are predicted; an --out-dir that cannot be created and a missing input
    are one error line each."""
    ckpt = random_checkpoint(TOY_UPERNET, None, str(tmp_path / 'r.pth'))
    deploy(TOY_UPERNET, ckpt, str(tmp_path / 'bundle'), images[:1],
           repeat=0)
    damaged = tmp_path / 'damaged.png'
    damaged.write_bytes(open(images[1], 'rb').read()[:60])
    proc = run_isolated(blocker, ['bundle/predict.py', images[0],
                                  str(damaged), '--out-dir', 'out'],
                        str(tmp_path))
    assert proc.returncode == 1
    assert "damaged.png' could not be decoded" in proc.stderr
    assert osp.isfile(tmp_path / 'out' / 'preds' / 'img_250x320.png')
    blocked_dir = tmp_path / 'a_file'
    blocked_dir.write_text('not a folder')
    for args, expected in (
            ([images[0], '--out-dir', str(blocked_dir / 'out')],
             'error: cannot create --out-dir'),
            ([str(tmp_path / 'missing.png'), '--out-dir', 'o'],
             "error: input '")):
        proc = run_isolated(blocker, ['bundle/predict.py', *args],
                            str(tmp_path))
        assert proc.returncode == 1
        assert proc.stderr.startswith(expected), proc.stderr
        assert proc.stderr.count('\n') == 1 and 'Traceback' not in \
            proc.stderr


def test_deploy_skips_damaged_image(tmp_path, images, capsys):
    """tools/deploy.py: a damaged --image is skipped with one error line
    (status 1), the others are checked; with none left, one error line."""
    ckpt = random_checkpoint(TOY_UPERNET, None, str(tmp_path / 'r.pth'))
    damaged = tmp_path / 'damaged.png'
    damaged.write_bytes(open(images[1], 'rb').read()[:60])
    argv = [TOY_UPERNET, ckpt, '--out-dir', str(tmp_path / 'b'), '--repeat',
            '0', '--image']
    assert main(argv + [images[0], str(damaged)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines()
              if line.startswith('error:')]
    assert len(errors) == 1 and 'could not be decoded' in errors[0]
    with pytest.raises(SystemExit) as exc:
        main(argv + [str(damaged)])
    assert str(exc.value.code).startswith(
        'error: no image to check the bundle on')


def test_rle_matches_pycocotools():
    from pycocotools import mask as mask_util

    from tools.lib.deploy.predict import rle_encode
    rng = np.random.default_rng(0)
    masks = [rng.random((37, 23)) > 0.5, np.zeros((5, 7), bool),
             np.ones((6, 4), bool), rng.random((64, 80)) > 0.97]
    for mask in masks:
        ref = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert rle_encode(mask) == dict(size=list(ref['size']),
                                        counts=ref['counts'].decode())


def test_deploy_errors(tmp_path):
    """One error line each: a missing checkpoint, a text file given as the
    checkpoint, a checkpoint of another model, an --out-dir that cannot be
    created, --int8 without --calib."""
    text = tmp_path / 'notes.pth'
    text.write_text('these are notes, not weights\n')
    blocked = tmp_path / 'a_file'
    blocked.write_text('x')
    seg = random_checkpoint(TOY_UPERNET, None, str(tmp_path / 'seg.pth'))
    cases = (
        ([str(tmp_path / 'missing.pth')], 'does not exist'),
        ([str(text)], 'is not a checkpoint'),
        ([seg], 'does not fit config'),
        ([seg, '--out-dir', str(blocked / 'sub')],
         'cannot create --out-dir'),
        ([seg, '--int8'], '--int8 and --calib DIR go together'),
    )
    for args, expected in cases:
        argv = [TOY_MASK_RCNN, *args]
        if '--out-dir' not in argv:
            argv += ['--out-dir', str(tmp_path / 'bundle')]
        with pytest.raises(SystemExit) as exc:
            main(argv)
        message = str(exc.value.code)
        assert message.startswith('error: ') and expected in message, \
            message
        assert '\n' not in message and 'weights_only' not in message


def test_unexportable_module_is_named(tmp_path):
    """An operator without ONNX symbolic: one error naming the module."""

    class SVDHead(torch.nn.Module):

        def forward(self, x):
            return torch.linalg.svd(x)[0]

    cfg = load_config(TOY_UPERNET)
    model = build_model(cfg, None)
    model.decode_head.conv_seg = SVDHead()
    from tools.lib.deploy.bundle import write_bundle
    data = make_batch(cfg, synthetic_image((64, 64)))
    with pytest.raises(DeployError) as exc:
        write_bundle(str(tmp_path), cfg, model, data,
                     dict(classes=[], palette=[]))
    assert 'model.decode_head.conv_seg (SVDHead)' in str(exc.value)


def test_unsupported_model_is_named():
    """A box coder whose decoding the graph does not restate."""
    from tools.lib.deploy.end2end import end2end_graph
    cfg = load_config(TOY_MASK_RCNN)
    model = build_model(cfg, None)

    class TBLRBBoxCoder:
        pass

    model.rpn_head.bbox_coder = TBLRBBoxCoder()
    with pytest.raises(DeployError) as exc:
        end2end_graph(model, static=False)
    assert str(exc.value).startswith(
        'cannot express model.rpn_head (RPNHead) in one ONNX graph: box '
        'coder TBLRBBoxCoder')


# ------------------------------------------------------------------- int8
def test_int8_bundle(tmp_path, images, blocker):
    """--int8 --calib: onnxruntime's static quantization (QDQ, standard
    operators) of the bundle's graph, calibrated on a folder of images;
    the bundle then predicts with it, in isolation; its agreement is
    reported, not enforced."""
    ckpt = random_checkpoint(TOY_UPERNET, None, str(tmp_path / 'r.pth'))
    report = deploy(TOY_UPERNET, ckpt, str(tmp_path / 'bundle'), images[:2],
                    repeat=0, int8_calib=osp.dirname(images[0]))
    assert not report['disagreements']  # the fp32 graph's
    int8 = report['int8']
    assert int8['calib_images'] == len(SIZES)
    assert int8['quantized']['QuantizeLinear'] > 0
    assert 0.0 <= int8['agreement'] <= 1.0 and len(int8['images']) == 2
    with open(tmp_path / 'bundle' / 'bundle.json') as f:
        assert json.load(f)['graph'] == 'end2end_int8.onnx'
    check_graph(str(tmp_path / 'bundle' / 'end2end_int8.onnx'))
    proc = run_isolated(blocker, ['bundle/predict.py', images[2],
                                  '--out-dir', 'out'], str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert osp.isfile(tmp_path / 'out' / 'preds' / 'img_300x180.png')


# ------------------------------------------------------------------- fp16
def test_fp16_bundle(tmp_path, images, blocker):
    """--fp16 on a V2 model: the networks in fp16, every LayerNormalization
    and GRN reduction reading fp32, RoiAlign / NMS and the graph's inputs
    and outputs in fp32; the bundle predicts with it, in isolation; its
    agreement is reported, not enforced."""
    import onnx
    config = osp.join(CONFIG_DIR, 'toy', 'mask_rcnn_convnextv2_atto_toy.py')
    ckpt = random_checkpoint(config, None, str(tmp_path / 'r.pth'))
    report = deploy(config, ckpt, str(tmp_path / 'bundle'), images[:2],
                    repeat=0, fp16=True)
    assert not report['disagreements']  # the fp32 graph's
    fp16 = report['fp16']
    assert 0.0 <= fp16['agreement'] <= 1.0 and len(fp16['images']) == 2
    assert fp16['fp16_nodes']['Conv'] > 0
    assert not {'RoiAlign', 'NonMaxSuppression', 'TopK'} & set(
        fp16['fp16_nodes'])
    with open(tmp_path / 'bundle' / 'bundle.json') as f:
        spec = json.load(f)
    assert (spec['graph'], spec['precision']) == ('end2end_fp16.onnx',
                                                  'fp16')
    path = str(tmp_path / 'bundle' / 'end2end_fp16.onnx')
    check_graph(path)
    graph = onnx.shape_inference.infer_shapes(onnx.load(path)).graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(graph.value_info) + list(graph.input) +
             list(graph.output)}
    types.update({t.name: t.data_type for t in graph.initializer})
    fp32, half = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert all(types[v.name] != half for v in
               list(graph.input) + list(graph.output))
    norms = [n for n in graph.node if n.op_type == 'LayerNormalization']
    grn = [n for n in graph.node
           if '/grn' in n.name and n.op_type.startswith('Reduce')]
    convs = [n for n in graph.node if n.op_type == 'Conv']
    assert norms and grn and convs
    for node in norms + grn:
        assert types[node.input[0]] == fp32, node.name
    assert sum(types[n.input[0]] == half for n in convs) > len(convs) // 2
    proc = run_isolated(blocker, ['bundle/predict.py', images[2],
                                  '--out-dir', 'out'], str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert osp.isfile(tmp_path / 'out' / 'preds' / 'img_300x180.json')


def test_fp16_and_int8_exclusive(tmp_path, capsys):
    """Each makes the graph the bundle uses: asking for both is refused
    before anything is exported."""
    with pytest.raises(DeployError, match='--fp16 and --int8'):
        deploy(TOY_UPERNET, None, str(tmp_path / 'bundle'), fp16=True,
               int8_calib=str(tmp_path))
    with pytest.raises(SystemExit) as exc:
        main([TOY_UPERNET, '--out-dir', str(tmp_path / 'b'), '--fp16',
              '--int8', '--calib', str(tmp_path)])
    assert exc.value.code == 2
    assert 'not allowed with argument --fp16' in capsys.readouterr().err
    assert not osp.exists(tmp_path / 'bundle')


# ------------------------------------------------- figures of full models
def test_deploy_figures_cases_are_convnext_models(tmp_path):
    """tools/analysis/deploy_figures.py's models (full size, timed there,
    not here): each config loads with its options and has ConvNeXt as its
    backbone; the mmseg case is mmseg's shipped config swapped."""
    from tools.analysis import deploy_figures as figs
    for name in figs.CASES:
        config, options = figs.case_config(name, str(tmp_path))
        cfg = load_config(config, options)
        assert cfg.model.backbone.type in ('ConvNeXt', 'ConvNeXtV2'), name
    assert osp.dirname(figs.case_config('deeplabv3plus_t_swap',
                                        str(tmp_path))[0]) == str(tmp_path)


def test_blocker_blocks(tmp_path, blocker):
    """The isolation the bundle tests rely on."""
    proc = run_isolated(blocker, ['-c', 'import numpy, onnxruntime, cv2; '
                                  'import torch'], str(tmp_path))
    assert proc.returncode == 1 and 'torch is blocked' in proc.stderr
