"""The plugin works from mmdet's and mmseg's *own* tools/train.py: a config
with ``custom_imports=dict(imports=['convnext_backbone'])`` is all they
need (the toy configs, a couple of iterations on tiny generated data)."""
import os
import os.path as osp
import subprocess
import sys

import mmdet
import mmseg
import pytest

from tools.lib.toy_data import generate_toy_ade, generate_toy_coco

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def own_train_py(package) -> str:
    path = osp.join(osp.dirname(package.__file__), '.mim', 'tools',
                    'train.py')
    if not osp.isfile(path):
        pytest.skip(f'{package.__name__} was installed without its tools')
    return path


def upstream_config_prefixes() -> bool:
    """Whether mmengine's ``mmseg::`` prefix finds its distribution without
    this package's help: on the onedl profile the distribution is
    onedl-mmsegmentation, which onedl-mmengine does not know."""
    from importlib import metadata
    try:
        metadata.version('mmsegmentation')
        return True
    except metadata.PackageNotFoundError:
        return False


def run_train(train_py, config, work_dir, options, import_first=False):
    """``python train_py CONFIG ...``; with ``import_first``, the documented
    way on the onedl stack (docs/stacks.md): the package is imported before
    the script parses the config, so ``mmseg::`` bases resolve."""
    prelude = [] if not import_first else [
        '-c', 'import sys, runpy, convnext_backbone; sys.argv = sys.argv[1:]; '
        "runpy.run_path(sys.argv[0], run_name='__main__')"]
    proc = subprocess.run(
        [sys.executable, *prelude, train_py,
         osp.join(REPO, 'configs', 'toy', config),
         '--work-dir', str(work_dir), '--cfg-options', *options],
        capture_output=True, text=True, timeout=300, cwd=str(work_dir.parent),
        # on CPU whatever GPUs the machine has, as the rest of the suite
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_mmdet_own_train_py(tmp_path):
    root = tmp_path / 'coco'
    generate_toy_coco(str(root), seed=2, num_train=4, num_val=2,
                      img_size=64)
    ann = root / 'annotations' / 'instances_val.json'
    log = run_train(own_train_py(mmdet), 'mask_rcnn_convnext_atto_toy.py',
                    tmp_path / 'wd', [
                        f'train_dataloader.dataset.data_root={root}/',
                        f'val_dataloader.dataset.data_root={root}/',
                        f'val_evaluator.ann_file={ann}',
                        'train_cfg.max_epochs=1',
                        'train_dataloader.batch_size=2'])
    assert 'ConvNeXtLayerDecayOptimizerConstructor: layer_wise' in log
    assert 'coco/bbox_mAP' in log
    assert (tmp_path / 'wd' / 'epoch_1.pth').is_file()


def test_mmseg_own_train_py(tmp_path):
    root = tmp_path / 'ade'
    generate_toy_ade(str(root), seed=2, num_train=4, num_val=2, img_size=64)
    log = run_train(own_train_py(mmseg), 'upernet_convnext_atto_toy.py',
                    tmp_path / 'wd', [
                        f'train_dataloader.dataset.data_root={root}/',
                        f'val_dataloader.dataset.data_root={root}/',
                        'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                        'train_dataloader.batch_size=2'],
                    import_first=not upstream_config_prefixes())
    assert 'ConvNeXtLayerDecayOptimizerConstructor: stage_wise' in log
    assert 'mIoU' in log
    assert (tmp_path / 'wd' / 'iter_2.pth').is_file()


def fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter (nothing imported yet); its
    stdout."""
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=120, cwd=REPO,
                          env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_the_plugin_imports_no_framework_and_no_tools():
    """``import convnext_backbone`` (what a config's custom_imports runs)
    loads torch, mmengine and mmcv, and nothing of mmdet, mmseg, the
    downstream projects or the repository's tools."""
    code = ('import sys, convnext_backbone; '
            'print(sorted({m.split(".")[0] for m in sys.modules} & '
            '{"mmdet", "mmseg", "mmpose", "mmpretrain", "tools", "timm"}))')
    stdout = fresh_python(code)
    assert stdout.split('\n')[-2] == '[]', stdout


def test_swap_loads_on_first_use():
    """``import convnext_backbone`` (every config that imports the package or
    its presets) does not load swap.py; ``swap_backbone`` and ``SwapError``
    import it on first access."""
    code = ('import sys, convnext_backbone\n'
            "assert 'convnext_backbone.swap' not in sys.modules, 'loaded'\n"
            'from convnext_backbone import SwapError, swap_backbone\n'
            "assert swap_backbone.__module__ == 'convnext_backbone.swap'\n"
            'assert issubclass(SwapError, ValueError)\n'
            "assert 'swap_backbone' in convnext_backbone.__all__\n"
            "assert not hasattr(convnext_backbone, 'no_such_name')\n")
    fresh_python(code)
