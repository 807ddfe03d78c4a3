"""Drop-in for mmdet's / mmseg's own ConvNeXt (``type='mmpretrain.ConvNeXt'``).

The reference is the peers' own code: mmpretrain's ConvNeXt and the ConvNeXt
configs mmdet and mmseg ship, random weights saved as their zoos save them
(torch's legacy format included). Tests that build mmpretrain's ConvNeXt run
where ``mmpretrain.models`` imports (the onedl profile; on the upstream
profile mmpretrain 1.2.0 is installed but imports torchvision, which no PyPI
build provides beside its CPU torch) and skip elsewhere with that reason.
What needs no mmpretrain (its signature, read from its source file; the
refusals; the load checks; the legacy format) runs on both profiles.
"""
import ast
import importlib
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner.checkpoint import load_checkpoint

from convnext_backbone import (CheckpointError, ConvNeXt, ConvNeXtV2,
                               convert_model_state_dict)
from convnext_backbone.checkpoint import detect_layout, rename_backbone_keys
from convnext_backbone.mmpretrain_args import MMPRETRAIN_ARGUMENTS
from helpers import CONFIG_DIR, randomize_
from tools.lib.resume import checkpoint_problem
from tools.lib.weights import (CheckpointFileError, build_trained_model,
                               fitted_state_dict, read_checkpoint)

# A micro arch written the mmpretrain way (channels, lists).
MICRO_MMPRETRAIN = dict(depths=[1, 1, 2, 1], channels=[8, 16, 32, 64])
DIMS = [8, 16, 32, 64]
# What mmdet's and mmseg's ConvNeXt configs pass besides arch / init_cfg.
ZOO_KWARGS = dict(out_indices=[0, 1, 2, 3], drop_path_rate=0.4,
                  layer_scale_init_value=1.0, gap_before_final_norm=False)
MMDET_CONFIGS = (
    'convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py',
    'convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-'
    'ms-crop-3x_coco.py',
    'convnext/cascade-mask-rcnn_convnext-s-p4-w7_fpn_4conv1fc-giou_amp-'
    'ms-crop-3x_coco.py',
)
MMSEG_CONFIGS = tuple(
    f'convnext/convnext-{arch}_upernet_8xb2-amp-160k_ade20k-{size}.py'
    for arch, size in (('tiny', '512x512'), ('small', '512x512'),
                       ('base', '512x512'), ('base', '640x640'),
                       ('large', '640x640'), ('xlarge', '640x640')))


def mmpretrain_models():
    """``mmpretrain.models``, or skip with the reason it does not import."""
    try:
        return importlib.import_module('mmpretrain.models')
    except ImportError as exc:
        pytest.skip(f'mmpretrain.models does not import here ({exc}); the '
                    'onedl profile (make test STACK=onedl) runs this test')


def zoo_config(package: str, path: str) -> Config:
    """A ConvNeXt config as mmdet / mmseg ship it (``.mim/configs``), read
    without running its ``custom_imports`` (``mmpretrain.models``, which
    does not import on every profile)."""
    module = importlib.import_module(package)
    return Config.fromfile(
        osp.join(osp.dirname(module.__file__), '.mim', 'configs', path),
        import_custom_modules=False)


def mmpretrain_init_args():
    """The argument names of mmpretrain's ``ConvNeXt.__init__``, read from
    its installed source file without importing it."""
    spec = importlib.util.find_spec('mmpretrain')
    if spec is None:
        pytest.skip('mmpretrain is not installed')
    path = osp.join(spec.submodule_search_locations[0], 'models',
                    'backbones', 'convnext.py')
    with open(path) as f:
        tree = ast.parse(f.read())
    cls = next(n for n in tree.body
               if isinstance(n, ast.ClassDef) and n.name == 'ConvNeXt')
    init = next(n for n in cls.body
                if isinstance(n, ast.FunctionDef) and n.name == '__init__')
    return [a.arg for a in init.args.args[1:]]


# ------------------------------------------------------------ arguments
def test_every_mmpretrain_argument_is_decided_and_accepted():
    names = mmpretrain_init_args()
    assert len(names) == 14
    assert sorted(names) == sorted(MMPRETRAIN_ARGUMENTS)
    ours = ConvNeXt.__init__.__code__.co_varnames[
        1:ConvNeXt.__init__.__code__.co_argcount]
    assert set(names) <= set(ours)


def test_the_docs_list_every_decision():
    page = osp.join(osp.dirname(CONFIG_DIR), 'docs',
                    'coming_from_mmpretrain.md')
    with open(page) as f:
        rows = [line for line in f if line.startswith('| `')]
    for name in MMPRETRAIN_ARGUMENTS:
        assert any(row.startswith(f'| `{name}` |') for row in rows), name


def test_mmpretrain_defaults_build_the_same_backbone():
    plain = randomize_(ConvNeXt(dict(depths=[1, 1, 2, 1], dims=DIMS),
                                layer_scale_init_value=1.0)).eval()
    spelled = ConvNeXt(
        MICRO_MMPRETRAIN, in_channels=3, stem_patch_size=4,
        norm_cfg=dict(type='LN2d', eps=1e-6), act_cfg=dict(type='GELU'),
        linear_pw_conv=True, use_grn=False, with_cp=False, frozen_stages=0,
        init_cfg=None, **ZOO_KWARGS).eval()
    spelled.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        for a, b in zip(plain(x), spelled(x)):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize('kwargs,error,fragment', [
    (dict(stem_patch_size=2), ValueError, 'stem_patch_size=2 changes'),
    (dict(norm_cfg=dict(type='BN')), ValueError, 'remove norm_cfg'),
    (dict(norm_cfg=dict(type='LN2d')), ValueError, 'eps=1e-6'),
    (dict(act_cfg=dict(type='ReLU')), ValueError, 'remove act_cfg'),
    (dict(gap_before_final_norm=True), ValueError,
     'set gap_before_final_norm=False'),
    (dict(use_grn=True), ValueError, 'layer_scale_init_value=0.'),
    (dict(use_grn=True, layer_scale_init_value=1e-6), ValueError,
     'neither ConvNeXt V1 nor V2'),
    (dict(pretrained=123), TypeError, 'pretrained=123 must be'),
    (dict(frozen_stages=5), ValueError, 'frozen_stages=5'),
    (dict(arch=dict(depths=[1] * 4, dims=DIMS, channels=DIMS)), ValueError,
     'both dims and channels'),
])
def test_values_that_would_build_another_model_are_refused(
        kwargs, error, fragment):
    kwargs.setdefault('arch', MICRO_MMPRETRAIN)
    with pytest.raises(error, match=fragment):
        ConvNeXt(**kwargs)


def test_v2_written_the_mmpretrain_way():
    v2 = ConvNeXt(MICRO_MMPRETRAIN, use_grn=True, layer_scale_init_value=0.)
    assert v2.version == 2 and hasattr(v2.stages[0][0], 'grn')
    assert v2.stages[0][0].gamma is None
    # a preset V2 does not define is built as mmpretrain builds it
    small = ConvNeXt('small', use_grn=True, layer_scale_init_value=0.,
                     out_indices=(0, ))
    assert small.version == 2 and small.depths == (3, 3, 27, 3)
    ConvNeXtV2(MICRO_MMPRETRAIN, use_grn=True, layer_scale_init_value=0.)
    with pytest.raises(ValueError, match="use type='ConvNeXt' for V1"):
        ConvNeXtV2(MICRO_MMPRETRAIN, use_grn=False)


@pytest.mark.parametrize('k', [-1, 0, 1, 2, 3, 4])
def test_frozen_stages_counts_stages(k):
    model = ConvNeXt(MICRO_MMPRETRAIN, frozen_stages=k).train()
    for i in range(4):
        frozen = i < k
        for part in (model.downsample_layers[i], model.stages[i]):
            assert part.training is not frozen
            assert all(p.requires_grad is not frozen
                       for p in part.parameters())
        assert all(p.requires_grad for p in
                   getattr(model, f'norm{i}').parameters())


@pytest.mark.parametrize('k', [0, 1, 2, 3, 4])
def test_frozen_stages_freeze_what_mmpretrain_freezes(k):
    models = mmpretrain_models()
    theirs = models.ConvNeXt(MICRO_MMPRETRAIN, frozen_stages=k, **ZOO_KWARGS)
    theirs.train()  # mmpretrain's train() returns None
    ours = ConvNeXt(MICRO_MMPRETRAIN, frozen_stages=k, **ZOO_KWARGS).train()
    for name in ('downsample_layers', 'stages'):
        for i in range(4):
            a, b = getattr(theirs, name)[i], getattr(ours, name)[i]
            assert a.training == b.training, (name, i)
            assert ([p.requires_grad for p in a.parameters()] ==
                    [p.requires_grad for p in b.parameters()]), (name, i)


@pytest.mark.parametrize('variant', [
    dict(),
    dict(use_grn=True, layer_scale_init_value=0.),
    dict(linear_pw_conv=False),
])
def test_mmpretrain_weights_give_mmpretrain_outputs(variant):
    models = mmpretrain_models()
    kwargs = {**ZOO_KWARGS, **variant}
    theirs = randomize_(models.ConvNeXt(MICRO_MMPRETRAIN, **kwargs))
    theirs.eval()  # mmpretrain's train() (and so eval()) returns None
    ours = MODELS.build(dict(type='ConvNeXt', arch=MICRO_MMPRETRAIN,
                             **kwargs)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(theirs(x), ours(x)):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------- layer-wise decay
@pytest.mark.parametrize('arch', ['atto', 'tiny', 'small'])
def test_get_layer_depth_answers_as_mmpretrain(arch):
    models = mmpretrain_models()
    theirs = models.ConvNeXt(arch, **ZOO_KWARGS)
    ours = ConvNeXt(arch, **ZOO_KWARGS)
    for name, _ in theirs.named_parameters(prefix='backbone'):
        assert (ours.get_layer_depth(name, 'backbone.') ==
                theirs.get_layer_depth(name, 'backbone.')), name
    assert (ours.get_layer_depth('head.fc.weight', 'backbone.') ==
            theirs.get_layer_depth('head.fc.weight', 'backbone.'))


def test_mmpretrain_decay_constructor_on_an_image_classifier():
    mmpretrain_models()
    from mmengine.optim import build_optim_wrapper

    def groups(backbone_type):
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            model = MODELS.build(dict(
                type='ImageClassifier',
                backbone=dict(type=backbone_type, arch='atto',
                              out_indices=(3, ), drop_path_rate=0.1,
                              gap_before_final_norm=False),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(type='LinearClsHead', num_classes=10,
                          in_channels=320)))
            wrapper = build_optim_wrapper(model, dict(
                optimizer=dict(type='AdamW', lr=4e-3, weight_decay=0.05),
                constructor='LearningRateDecayOptimWrapperConstructor',
                paramwise_cfg=dict(layer_decay_rate=0.8,
                                   norm_decay_mult=0., flat_decay_mult=0.)))
        names = {'depthwise_conv': 'dwconv', 'pointwise_conv': 'pwconv'}
        out = {}
        for group in wrapper.optimizer.param_groups:
            name = group['param_name']
            for old, new in names.items():
                name = name.replace(old, new)
            out[name] = (group['lr'], group['weight_decay'])
        return out

    ours, theirs = groups('mmengine.ConvNeXt'), groups('ConvNeXt')
    assert ours == theirs
    # mmpretrain's L = 6 for atto: ids 0..7, of which 5 is nobody's (stage
    # 2's six blocks take 3 and 4); this package's own rule counts L = 5
    assert len({lr for lr, _ in ours.values()}) == 7


# ------------------------------------------ their configs and checkpoints
def shrink(cfg: Config) -> Config:
    """Make a detector / segmentor config of mmdet / mmseg / ours tiny the
    same way, whatever its backbone: micro arch, no pretrained file,
    narrower heads where that only changes sizes."""
    model = cfg.model
    model.backbone.arch = dict(MICRO_MMPRETRAIN)
    model.backbone.init_cfg = None
    model.pop('pretrained', None)
    if 'neck' in model:
        model.neck.in_channels = DIMS
    if 'decode_head' in model:
        model.decode_head.in_channels = DIMS
        model.decode_head.channels = 32
        model.auxiliary_head.in_channels = DIMS[2]
        model.auxiliary_head.channels = 16
    return cfg


def build(cfg: Config, scope: str):
    """The config's model in its scope, in eval mode, SyncBN as BN."""
    from mmengine.model import revert_sync_batchnorm
    importlib.import_module(f'{scope}.models')
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(cfg.model)
    return revert_sync_batchnorm(model).eval()


def features(model, x):
    with torch.no_grad():
        return model.extract_feat(x)


def zoo_checkpoint(package: str, config: str, tmp_path):
    """mmdet's / mmseg's config shrunk, built with mmpretrain's ConvNeXt,
    random weights, saved as their zoo files are (legacy format, meta)."""
    mmpretrain_models()
    cfg = shrink(zoo_config(package, config))
    theirs = randomize_(build(cfg, 'mmdet' if package == 'mmdet' else
                              'mmseg'))
    path = str(tmp_path / 'zoo.pth')
    torch.save({'state_dict': theirs.state_dict(),
                'meta': {'dataset_meta': {'classes': ('a', 'b')}}}, path,
               _use_new_zipfile_serialization=False)
    return cfg, theirs, path


def type_changed(cfg: Config) -> Config:
    """What the docs tell a user to change: the type, and custom_imports."""
    cfg = Config(cfg.to_dict())
    cfg.model.backbone.type = 'ConvNeXt'
    cfg.custom_imports = dict(imports=['convnext_backbone'],
                              allow_failed_imports=False)
    return cfg


# This package's config of the same experiment as each zoo config (the
# table of docs/coming_from_mmpretrain.md).
OUR_CONFIG = dict(zip(MMDET_CONFIGS + MMSEG_CONFIGS, (
    'mask_rcnn_convnext_t.py', 'cascade_mask_rcnn_convnext_t.py',
    'cascade_mask_rcnn_convnext_s.py', 'upernet_convnext_t_512.py',
    'upernet_convnext_s_512.py', 'upernet_convnext_b_512.py',
    'upernet_convnext_b_640_in22k.py', 'upernet_convnext_l_640_in22k.py',
    'upernet_convnext_xl_640_in22k.py')))


@pytest.mark.parametrize('config', MMDET_CONFIGS + MMSEG_CONFIGS)
def test_our_config_has_the_zoo_config_model(config):
    """Every tensor of the zoo config's model (its type changed: the same
    layout as this package's) has its key and shape in this package's
    config of the same experiment, and nothing more: the zoo's checkpoint
    of that config loads strictly into ours."""
    package = 'mmdet' if config in MMDET_CONFIGS else 'mmseg'
    theirs = type_changed(zoo_config(package, config))
    ours = Config.fromfile(osp.join(CONFIG_DIR, OUR_CONFIG[config]))
    shapes = []
    for cfg in (theirs, ours):
        cfg.model.backbone.init_cfg = None
        cfg.model.pop('pretrained', None)
        with torch.device('meta'):
            model = build(cfg, package)
        shapes.append({k: tuple(v.shape)
                       for k, v in model.state_dict().items()})
    assert shapes[0] == shapes[1]


@pytest.mark.parametrize('package,config', [
    ('mmdet', MMDET_CONFIGS[0]), ('mmdet', MMDET_CONFIGS[1]),
    ('mmseg', MMSEG_CONFIGS[0])])
def test_zoo_checkpoint_in_their_config_and_ours(package, config, tmp_path):
    """Their config with only the type changed, and this package's paper
    config, give their model's outputs from their checkpoint on every load
    path: mmengine's load_checkpoint (the Runner's load_from), mmdet's /
    mmseg's init API, and the tools' strict check."""
    cfg, theirs, path = zoo_checkpoint(package, config, tmp_path)
    scope = 'mmdet' if package == 'mmdet' else 'mmseg'
    x = torch.randn(1, 3, 64, 96)
    expected = features(theirs, x)
    assert checkpoint_problem(path) is None  # legacy format accepted
    ours_cfg = type_changed(cfg)
    ours = build(ours_cfg, scope)
    assert isinstance(ours.backbone, ConvNeXt)
    load_checkpoint(ours, path, map_location='cpu')  # strict=False
    for a, b in zip(features(ours, x), expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    if scope == 'mmdet':
        from mmdet.apis import init_detector as init_api
    else:
        from mmseg.apis import init_model as init_api
    with DefaultScope.overwrite_default_scope(scope):
        api_model = init_api(ours_cfg, path, device='cpu')
    for a, b in zip(features(api_model.eval(), x), expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # this package's paper config of the same experiment: strict fit
    paper = shrink(Config.fromfile(osp.join(CONFIG_DIR, OUR_CONFIG[config])))
    paper_model = build(paper, scope)
    state = fitted_state_dict(paper_model, read_checkpoint(path), path,
                              OUR_CONFIG[config])
    paper_model.load_state_dict(state, strict=True)
    for a, b in zip(features(paper_model, x), expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_zoo_checkpoint_through_build_trained_model(tmp_path):
    """tools/infer.py and tools/deploy.py build their model this way."""
    cfg, theirs, path = zoo_checkpoint('mmseg', MMSEG_CONFIGS[0], tmp_path)
    ours_cfg = type_changed(cfg)
    ours_cfg.filename = 'their_config.py'
    model, checkpoint = build_trained_model(ours_cfg, path)
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(features(model, x), features(theirs, x)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert checkpoint['meta']['dataset_meta']['classes'] == ('a', 'b')


def test_every_zoo_config_builds_with_the_type_changed():
    """Each ConvNeXt config mmdet and mmseg ship (full size), with only the
    type changed, builds this backbone with mmpretrain's meaning of its
    keys (parameter counts equal to mmpretrain's trunk where it imports)."""
    for package, configs in (('mmdet', MMDET_CONFIGS),
                             ('mmseg', MMSEG_CONFIGS)):
        for config in configs:
            cfg = zoo_config(package, config).model.backbone
            cfg = {k: v for k, v in cfg.items() if k != 'init_cfg'}
            cfg['type'] = 'ConvNeXt'
            with torch.device('meta'):  # shapes only: no memory, no init
                model = MODELS.build(cfg)
            assert model.frozen_stages <= 0 and model.version == 1
            assert model.layer_scale_init_value == 1.0


# --------------------------------------------------- layouts and refusals
def whole_model_state(tmp_path):
    """A tiny UperNet of this package with random weights."""
    cfg = shrink(Config.fromfile(osp.join(CONFIG_DIR,
                                          'upernet_convnext_t_512.py')))
    return cfg, randomize_(build(cfg, 'mmseg'))


def test_official_dense_layout_in_legacy_format(tmp_path):
    """The official dense repos' files (mmdet 2.x / mmseg 0.x era): our key
    names, legacy format, meta with CLASSES / PALETTE."""
    cfg, model = whole_model_state(tmp_path)
    path = str(tmp_path / 'official.pth')
    torch.save({'state_dict': model.state_dict(),
                'meta': {'CLASSES': ('wall', 'floor'), 'PALETTE': [[1, 2, 3],
                                                                  [4, 5, 6]],
                         'mmseg_version': '0.20.2'}}, path,
               _use_new_zipfile_serialization=False)
    assert checkpoint_problem(path) is None
    fresh = build(cfg, 'mmseg')
    state = fitted_state_dict(fresh, read_checkpoint(path), path, 'cfg')
    assert detect_layout(k[9:] for k in state
                         if k.startswith('backbone.')) == 'convnext_backbone'
    fresh.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(features(fresh, x), features(model, x)):
        torch.testing.assert_close(a, b)


def test_timm_layout_under_backbone_is_converted():
    timm = pytest.importorskip('timm', reason='timm is installed in the '
                               'onedl profile only')
    net = randomize_(timm.create_model(
        'convnext_atto', pretrained=False, num_classes=0)).eval()
    ours = ConvNeXt('atto', layer_scale_init_value=1.0).eval()
    state = {f'backbone.{k}': v for k, v in net.state_dict().items()}
    holder = torch.nn.Module()
    holder.backbone = ours
    converted, layouts = convert_model_state_dict(holder, state)
    assert layouts == ['timm']
    missing, unexpected = holder.load_state_dict(converted, strict=False)
    assert all(k.startswith('backbone.norm') for k in missing)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        theirs = net.forward_intermediates(x, intermediates_only=True)
        last = ours.stages[3](ours.downsample_layers[3](ours.stages[2](
            ours.downsample_layers[2](ours.stages[1](ours.downsample_layers[1](
                ours.stages[0](ours.downsample_layers[0](x)))))))).contiguous()
    torch.testing.assert_close(last, theirs[-1], rtol=1e-4, atol=1e-4)


def test_partial_backbone_is_refused_on_every_path(tmp_path):
    cfg, model = whole_model_state(tmp_path)
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith('backbone.stages.3.')}
    path = str(tmp_path / 'partial.pth')
    torch.save({'state_dict': state}, path)
    fresh = build(cfg, 'mmseg')
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(CheckpointError,
                       match=r"fills only 52 of the 61 trunk tensors .*"
                       r"'backbone\.stages\.3\.0\.gamma' and 8 more would "
                       'stay random'):
        load_checkpoint(fresh, path, map_location='cpu')  # Runner's path
    with pytest.raises(CheckpointError, match='would stay random'):
        fresh.load_state_dict(state, strict=False)
    assert all(torch.equal(before[k], v)
               for k, v in fresh.state_dict().items())
    with pytest.raises(CheckpointFileError, match='would stay random'):
        fitted_state_dict(fresh, read_checkpoint(path), path, 'cfg.py')
    cfg.filename = 'cfg.py'
    with pytest.raises(CheckpointFileError, match='does not fit config'):
        build_trained_model(cfg, path)


def test_other_version_under_the_prefix_is_refused():
    v1 = ConvNeXt(MICRO_MMPRETRAIN)
    holder = torch.nn.Module()
    holder.backbone = ConvNeXtV2(MICRO_MMPRETRAIN)
    state = {f'backbone.{k}': v for k, v in v1.state_dict().items()}
    with pytest.raises(CheckpointError, match="use type='ConvNeXt'"):
        holder.load_state_dict(state, strict=False)


def test_head_mismatch_is_named_by_the_tools_check(tmp_path):
    cfg, model = whole_model_state(tmp_path)
    state = model.state_dict()
    state['decode_head.conv_seg.weight'] = torch.zeros(3, 32, 1, 1)
    path = str(tmp_path / 'other_head.pth')
    torch.save({'state_dict': state}, path)
    with pytest.raises(CheckpointFileError,
                       match=r'decode_head.conv_seg.weight: \(3, 32, 1, 1\)'):
        fitted_state_dict(build(cfg, 'mmseg'), read_checkpoint(path), path,
                          'cfg.py')


def test_conversion_logs_once():
    from helpers import captured_logs
    from mmengine.logging import MMLogger
    ours = ConvNeXt(MICRO_MMPRETRAIN)
    named = {k.replace('dwconv', 'depthwise_conv'): v
             for k, v in ours.state_dict().items()}
    with captured_logs(MMLogger.get_current_instance()) as logs:
        ours.load_state_dict(named, strict=True)
    lines = [m for m in logs.messages() if 'converted' in m]
    assert len(lines) == 1 and 'from the mmpretrain layout' in lines[0]


def test_rename_backbone_keys_keeps_the_rest():
    ours = ConvNeXt(MICRO_MMPRETRAIN)
    state = {f'backbone.{k}'.replace('pwconv', 'pointwise_conv'): v
             for k, v in ours.state_dict().items()}
    state['neck.conv.weight'] = torch.ones(1)
    out, layout, changed = rename_backbone_keys(state)
    assert layout == 'mmpretrain' and changed == 4 * 5  # 5 blocks
    assert out['neck.conv.weight'] is state['neck.conv.weight']
    assert set(out) == {f'backbone.{k}' for k in ours.state_dict()} | {
        'neck.conv.weight'}


def test_convert_tool_keeps_a_whole_model_and_names_the_layout(
        tmp_path, capsys):
    from tools.convert_checkpoint import main
    cfg, model = whole_model_state(tmp_path)
    names = {'.dwconv.': '.depthwise_conv.', '.pwconv1.': '.pointwise_conv1.',
             '.pwconv2.': '.pointwise_conv2.'}
    state = {}
    for key, value in model.state_dict().items():
        for ours, theirs in names.items():
            key = key.replace(ours, theirs)
        state[key] = value
    src, dst = str(tmp_path / 'zoo.pth'), str(tmp_path / 'ours.pth')
    torch.save({'state_dict': state, 'meta': {'CLASSES': ('a', )}}, src,
               _use_new_zipfile_serialization=False)
    main([src, dst])
    said = capsys.readouterr().out
    assert 'a whole detector / segmentor checkpoint, backbone in the ' \
        'mmpretrain layout' in said
    written = torch.load(dst, weights_only=True)
    assert written['meta'] == {'CLASSES': ('a', )}
    fresh = build(cfg, 'mmseg')
    fresh.load_state_dict(written['state_dict'], strict=True)
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(features(fresh, x), features(model, x)):
        torch.testing.assert_close(a, b)
    with pytest.raises(SystemExit, match='holds no ConvNeXt weights'):
        torch.save({'state_dict': {'neck.w': torch.ones(1)}}, src)
        main([src, dst])


@pytest.mark.parametrize('base,scope', [(MMDET_CONFIGS[0], 'mmdet'),
                                        (MMSEG_CONFIGS[0], 'mmseg')])
def test_three_line_config_over_their_file(base, scope, tmp_path):
    """docs/coming_from_mmpretrain.md's config: their file as ``_base_``
    through ``mmdet::`` / ``mmseg::``, the type and custom_imports changed;
    it resolves on this stack and builds this backbone with their keys."""
    path = tmp_path / 'mine.py'
    path.write_text(
        f"_base_ = '{scope}::{base}'\n"
        "custom_imports = dict(imports=['convnext_backbone'], "
        'allow_failed_imports=False)\n'
        "model = dict(backbone=dict(type='ConvNeXt'))\n")
    cfg = Config.fromfile(str(path))
    backbone = cfg.model.backbone
    assert backbone.type == 'ConvNeXt'
    assert backbone.gap_before_final_norm is False
    assert backbone.init_cfg.prefix == 'backbone.'
    cfg.model.backbone.init_cfg = None
    with torch.device('meta'):
        model = build(cfg, scope)
    assert isinstance(model.backbone, ConvNeXt)
    assert model.backbone.layer_scale_init_value == 1.0
