"""The package as another project gets it: a wheel built from the
checkout's files, installed apart from the repository, used from a folder
outside it.

The wheel carries the plugin and, as package data under
``convnext_backbone/.mim/``, the repository's ``configs/`` and
``model-index.yml``; installing it with ``--no-deps`` touches nothing else.
From a directory outside the checkout (PYTHONPATH = the install target
only), a user's config that loads the plugin through ``custom_imports``
builds its ConvNeXt, and a shipped paper config loads (its ``_base_``
chain, ``mmdet::`` bases included) and builds.
"""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# What setup.py, MANIFEST.in and the build need from the checkout.
SOURCES = ('setup.py', 'MANIFEST.in', 'README.md', 'LICENSE',
           'CHANGELOG.md', 'CITATION.cff', 'model-index.yml',
           'convnext_backbone', 'configs')

USER_SCRIPT = textwrap.dedent('''
    import os.path as osp, sys
    import convnext_backbone
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS

    assert convnext_backbone.__file__.startswith(sys.argv[1]), \\
        convnext_backbone.__file__
    # A user's own config: the plugin through custom_imports.
    cfg = Config.fromfile('my_config.py')
    init_default_scope('mmdet')
    from mmengine.utils import import_modules_from_strings
    import_modules_from_strings(**cfg.custom_imports)
    backbone = MODELS.build(cfg.model.backbone)
    print('user config:', type(backbone).__name__, backbone.out_channels)
    # A shipped paper config, from the installed package data.
    configs = osp.join(osp.dirname(convnext_backbone.__file__), '.mim',
                       'configs')
    shipped = Config.fromfile(osp.join(configs, 'mask_rcnn_convnext_t.py'))
    shipped.model.backbone.init_cfg = None
    detector = MODELS.build(shipped.model)
    print('shipped config:', type(detector).__name__,
          shipped.model.backbone.arch, shipped.custom_hooks)
    v2 = Config.fromfile(osp.join(configs, 'convnextv2',
                                  'upernet_convnextv2_b_512.py'))
    print('shipped v2:', v2.model.backbone.type, v2.default_scope)
''')

USER_CONFIG = textwrap.dedent('''
    custom_imports = dict(imports=['convnext_backbone'],
                          allow_failed_imports=False)
    model = dict(backbone=dict(type='ConvNeXt', arch='atto',
                               out_indices=(1, 2, 3), init_cfg=None))
''')


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> str:
    """A wheel built from a copy of the checkout's sources (no build/ or
    egg-info left in the checkout)."""
    src = tmp_path_factory.mktemp('src')
    for name in SOURCES:
        path = osp.join(REPO, name)
        if osp.isdir(path):
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns(
                '__pycache__', '*.pyc', '*.egg-info'))
        else:
            shutil.copy(path, src / name)
    dist = tmp_path_factory.mktemp('dist')
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps',
         '--no-build-isolation', '--disable-pip-version-check', '-q', '-w',
         str(dist), str(src)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheels = glob.glob(str(dist / 'convnext_backbone-*.whl'))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_carries_the_configs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted(
        osp.relpath(p, REPO)
        for p in glob.glob(osp.join(REPO, 'configs', '**', '*'),
                           recursive=True)
        if osp.isfile(p) and '__pycache__' not in p)
    packed = sorted(n[len('convnext_backbone/.mim/'):] for n in names
                    if n.startswith('convnext_backbone/.mim/configs/'))
    assert packed == configs
    assert 'convnext_backbone/.mim/model-index.yml' in names
    # The wheel's version is version.py's (which CHANGELOG.md and
    # CITATION.cff agree with: tests/test_docs.py).
    scope: dict = {}
    with open(osp.join(REPO, 'convnext_backbone', 'version.py')) as f:
        exec(f.read(), scope)
    assert osp.basename(wheel).startswith(
        f"convnext_backbone-{scope['__version__']}-"), wheel
    # The licence text travels in the wheel's metadata.
    assert any(n.endswith('.dist-info/licenses/LICENSE')
               or n.endswith('.dist-info/LICENSE') for n in names), names
    # The plugin only: no tools, tests or the repository's data.
    tops = {n.split('/')[0] for n in names}
    assert {t for t in tops if not t.endswith('.dist-info')} == {
        'convnext_backbone'}


def test_installed_wheel_used_outside_the_repository(wheel, tmp_path):
    target = tmp_path / 'site'
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '--no-deps', '-q',
         '--disable-pip-version-check', '--target', str(target), wheel],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # --no-deps: the wheel alone, no torch / mmcv / mmdet / mmseg copies.
    assert sorted(p for p in os.listdir(target)
                  if not p.endswith('.dist-info')) == ['convnext_backbone']
    work = tmp_path / 'project'
    work.mkdir()
    (work / 'my_config.py').write_text(USER_CONFIG)
    (work / 'check.py').write_text(USER_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(target), CUDA_VISIBLE_DEVICES='')
    proc = subprocess.run(
        [sys.executable, 'check.py', str(target)], cwd=str(work), env=env,
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert 'user config: ConvNeXt [80, 160, 320]' in out \
        or 'user config: ConvNeXt (80, 160, 320)' in out, out
    assert "shipped config: MaskRCNN tiny [{'type': 'RandomStateHook'}]" \
        in out, out
    assert 'shipped v2: ConvNeXtV2 mmseg' in out, out
