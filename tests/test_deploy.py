"""tools/deploy.py: ONNX export and onnxruntime parity with mmdet's / mmseg's
own predictions (``model.test_step`` of the PyTorch model).

Each model is exported once (random weights, micro backbone, narrow heads,
small images) from a non-square image whose test input is padded, then
checked on that image and on a square one of another size: >= 0.99 of
PyTorch's detections found again with the same label at IoU >= 0.99 (and
their masks), or >= 0.99 of the pixels with the same label.
"""
import os.path as osp

import cv2
import pytest
import torch

from helpers import CONFIG_DIR, load, narrowed_heads, shipped, tiny_options

pytest.importorskip('onnx', reason='onnx is not installed (make deploy)')
pytest.importorskip(
    'onnxruntime', reason='onnxruntime is not installed (make deploy)')

from tools.deploy import main  # noqa: E402
from tools.lib.deploy import (build_model, deploy, load_config,  # noqa: E402
                              synthetic_image)
from tools.lib.deploy.export import DeployError, export_model  # noqa: E402

# (250, 320) -> 200 x 256 in the toy pipelines (padded to 224 x 256 for the
# detectors); (200, 200) -> 256 x 256.
SIZES = ((250, 320), (200, 200))
MIN_AGREEMENT = 0.99


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp('images')
    paths = []
    for seed, size in enumerate(SIZES):
        path = str(root / f'img_{size[0]}x{size[1]}.png')
        cv2.imwrite(path, synthetic_image(size, seed))
        paths.append(path)
    return paths


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
    100 detections per image so that the parity covers NMS."""
    opts = tiny_options(load(name))
    opts['model.backbone.init_cfg'] = None
    opts['model.test_cfg.rcnn.max_per_img'] = 100
    opts['model.test_cfg.rcnn.score_thr'] = 0.0  # random weights: few > 0.05
    # 192 x 256 and 192 x 192 batches (tiny_options' 166 x 100 pads both
    # images to 128 x 128)
    pipeline = opts['test_dataloader.dataset.pipeline']
    for step in pipeline:
        if step['type'] == 'Resize':
            step['scale'] = (256, 192)
    return opts


def run(config, tmp_path, images, options=None, init_weights=False,
        **kwargs):
    ckpt = random_checkpoint(config, options, str(tmp_path / 'random.pth'),
                             init_weights)
    report = deploy(config, ckpt, str(tmp_path / 'onnx'), images,
                    cfg_options=options, repeat=0, **kwargs)
    assert osp.isfile(tmp_path / 'onnx' / 'end2end.onnx')
    assert osp.isfile(tmp_path / 'onnx' / 'report.json')
    shapes = [tuple(r['input_shape']) for r in report['images']]
    assert len(set(shapes)) == len(images), shapes  # another size too
    assert any(h != w for h, w in shapes), shapes  # and a non-square one
    for res in report['images']:
        assert res['agreement'] >= MIN_AGREEMENT, report['disagreements']
    return report


def check_detections(report, graphs):
    assert report['task'] == 'detection'
    assert set(report['graphs']) == set(graphs)
    for res in report['images']:
        assert res['reference'] >= 20, res  # enough to compare
        if 'mask_agreement' in res:
            assert res['mask_agreement'] >= MIN_AGREEMENT, res
    assert all(v < 1e-3 for v in report['max_abs_diff'].values()), \
        report['max_abs_diff']


def test_mask_rcnn_v1(tmp_path, images):
    """Class-specific box regression (reg_class_agnostic=False), boxes
    clipped to the image inside a padded batch."""
    config = osp.join(CONFIG_DIR, 'toy', 'mask_rcnn_convnext_atto_toy.py')
    assert not load_config(config).model.roi_head.bbox_head.get(
        'reg_class_agnostic', False)
    report = run(config, tmp_path, images)
    check_detections(report, {'end2end', 'bbox_head', 'mask_head'})
    assert report['images'][0]['input_shape'] == [224, 256]  # padded


def test_mask_rcnn_v2_soft_nms(tmp_path, images):
    """The V2 paper config (soft-NMS in the box head), shrunk."""
    config = osp.join(CONFIG_DIR, 'convnextv2', 'mask_rcnn_convnextv2_b.py')
    options = paper_options('convnextv2/mask_rcnn_convnextv2_b')
    assert load_config(config, options).model.test_cfg.rcnn.nms.type == \
        'soft_nms'
    report = run(config, tmp_path, images, options)
    check_detections(report, {'end2end', 'bbox_head', 'mask_head'})


def test_cascade_mask_rcnn(tmp_path, images):
    config = osp.join(CONFIG_DIR, 'cascade_mask_rcnn_convnext_t.py')
    options = paper_options('cascade_mask_rcnn_convnext_t')
    heads = load_config(config, options).model.roi_head.bbox_head
    assert not any(h.get('reg_class_agnostic', False) for h in heads)
    report = run(config, tmp_path, images, options)
    check_detections(report, {'end2end'} | {
        f'{role}_{i}' for role in ('bbox_head', 'mask_head')
        for i in range(3)})


TOY_UPERNET = osp.join(CONFIG_DIR, 'toy', 'upernet_convnext_atto_toy.py')


def test_upernet_whole_dynamic(tmp_path, images):
    """Stride-32 maps of 7 x 8 and 8 x 8: the pyramid pooling's bins of 3
    and 6 do not divide them, exact through the pooling rewrite."""
    report = run(TOY_UPERNET, tmp_path, images)
    assert report['task'] == 'segmentation'
    assert any('psp_modules' in m for m in report['rewritten_for_export'])
    assert report['max_abs_diff']['end2end'] < 1e-3


def test_upernet_slide_static(tmp_path, images):
    """mmseg's sliding-window inference around a graph exported for the
    crop: 6 and 9 windows."""
    options = {'model.test_cfg': dict(mode='slide', crop_size=(128, 128),
                                      stride=(85, 85))}
    report = run(TOY_UPERNET, tmp_path, images, options, shape=(128, 128))
    assert [r['graph_calls']['end2end'] for r in report['images']] == [6, 9]


def test_static_export_refuses_other_sizes(tmp_path, images, capsys):
    ckpt = random_checkpoint(TOY_UPERNET, None, str(tmp_path / 'r.pth'))
    with pytest.raises(SystemExit) as exc:
        main([TOY_UPERNET, ckpt, '--out-dir', str(tmp_path / 'onnx'),
              '--shape', '256', '256', '--image', images[0], '--repeat',
              '0'])
    message = str(exc.value.code)
    assert message.startswith('error: end2end.onnx was exported for')
    assert '--dynamic' in message and '\n' not in message


def test_checkpoint_errors(tmp_path):
    toy_det = osp.join(CONFIG_DIR, 'toy', 'mask_rcnn_convnext_atto_toy.py')
    for ckpt, expected in ((str(tmp_path / 'missing.pth'), 'does not exist'),
                           (random_checkpoint(TOY_UPERNET, None,
                                              str(tmp_path / 'seg.pth')),
                            'does not fit config')):
        with pytest.raises(SystemExit) as exc:
            main([toy_det, ckpt, '--out-dir', str(tmp_path / 'onnx')])
        message = str(exc.value.code)
        assert message.startswith('error: checkpoint') and \
            expected in message and '\n' not in message


# ----------------------------------------------------- swap_backbone models
def swapped_config(tmp_path, framework, path, scale):
    from convnext_backbone import swap_backbone
    cfg = swap_backbone(shipped(framework, path), 'atto')
    cfg.merge_from_dict(narrowed_heads(cfg.model))
    pipeline = cfg.test_dataloader.dataset.pipeline
    for step in pipeline:
        if step['type'] == 'Resize':
            step['scale'] = scale
    cfg.test_dataloader.dataset.pipeline = pipeline
    out = str(tmp_path / 'swapped.py')
    cfg.dump(out)
    return out


def test_swap_retinanet(tmp_path, images):
    config = swapped_config(tmp_path, 'mmdet',
                            'retinanet/retinanet_r50_fpn_1x_coco.py',
                            (320, 256))
    # PyTorch's default init saturates the classifier (scores tied at
    # 1.0, in no defined order); RetinaNet's own puts every score at the
    # 0.01 prior, within float noise of each other. Normal(0, 0.1) spreads
    # them over (0, 1).
    options = {'model.bbox_head.init_cfg': dict(
        type='Normal', layer='Conv2d', std=0.1)}
    report = run(config, tmp_path, images, options, init_weights=True)
    check_detections(report, {'end2end'})


def test_swap_deeplabv3plus(tmp_path, images):
    """ASPP's image pooling, depthwise-separable convs, the low-level
    branch (c1_in_channels)."""
    config = swapped_config(
        tmp_path, 'mmseg',
        'deeplabv3plus/deeplabv3plus_r50-d8_4xb2-40k_cityscapes-512x1024.py',
        (320, 256))
    report = run(config, tmp_path, images)
    assert report['task'] == 'segmentation'


def test_unexportable_module_is_named(tmp_path):
    """An operator without ONNX symbolic: one error naming the module."""

    class SVDHead(torch.nn.Module):

        def forward(self, x):
            return torch.linalg.svd(x)[0]

    cfg = load_config(TOY_UPERNET)
    model = build_model(cfg, None)
    model.decode_head.conv_seg = SVDHead()
    with pytest.raises(DeployError) as exc:
        export_model(model, cfg, torch.zeros(1, 3, 64, 64),
                     str(tmp_path / 'onnx'))
    assert 'model.decode_head.conv_seg (SVDHead)' in str(exc.value)


# ------------------------------------------------------------------- fp16
def test_fp16_keeps_layernorm_and_grn_statistics_fp32(tmp_path):
    """In an fp16 export of a V2 model, every LayerNormalization and every
    GRN reduction reads fp32, the convolutions fp16."""
    import onnx
    config = osp.join(CONFIG_DIR, 'toy', 'mask_rcnn_convnextv2_atto_toy.py')
    cfg = load_config(config)
    model = build_model(cfg, None)
    result = export_model(model, cfg, torch.zeros(1, 3, 64, 64),
                          str(tmp_path / 'onnx'), fp16=True)
    graph = onnx.shape_inference.infer_shapes(
        onnx.load(result.files['end2end'])).graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(graph.value_info) + list(graph.input) +
             list(graph.output)}
    types.update({t.name: t.data_type for t in graph.initializer})
    fp32, fp16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert types[graph.input[0].name] == fp16
    norms = [n for n in graph.node if n.op_type == 'LayerNormalization']
    grn = [n for n in graph.node
           if '/grn' in n.name and n.op_type.startswith('Reduce')]
    convs = [n for n in graph.node if n.op_type == 'Conv']
    assert norms and grn and convs
    for node in norms + grn:
        assert types[node.input[0]] == fp32, node.name
    assert all(types[n.input[0]] == fp16 for n in convs)


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
