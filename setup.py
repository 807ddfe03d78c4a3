"""convnext_backbone: a ConvNeXt backbone for OpenMMLab dense prediction.

Install with ``make install`` (builds mmcv's ops, see tools/install.sh); into
an environment that already has torch, mmcv 2.x with ops, mmdet and/or mmseg,
``pip install .`` (or a wheel built with ``pip wheel --no-deps .``) adds the
plugin and the configs and leaves those packages alone (docs/get_started.md).

A built package carries the repository's ``configs/`` and ``model-index.yml``
as package data under ``convnext_backbone/.mim/``, where OpenMMLab packages
keep theirs (mmdet's ``mmdet/.mim/configs``); ``configs/`` stays the source
and is copied at build time. An editable install (``pip install -e .``, what
``make install`` does) reads them from the checkout instead.
"""
import os.path as osp
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
# What a wheel carries besides the code: source in the checkout -> path
# under the package.
MIM_FILES = {
    'configs': '.mim/configs',
    'model-index.yml': '.mim/model-index.yml'
}


class BuildPyWithConfigs(build_py):
    """build_py that also copies ``MIM_FILES`` into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):
            return  # the package is the checkout's: configs/ is beside it
        package_dir = osp.join(self.build_lib, 'convnext_backbone')
        for src, dst in MIM_FILES.items():
            src, dst = osp.join(HERE, src), osp.join(package_dir, dst)
            if not osp.exists(src):
                raise FileNotFoundError(
                    f'{src} is missing: build from a full checkout or sdist')
            if osp.isdir(dst):
                shutil.rmtree(dst)
            if osp.isdir(src):
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
                    '__pycache__', '*.pyc'))
            else:
                shutil.copyfile(src, dst)


def read_version() -> str:
    path = osp.join(osp.dirname(__file__), 'convnext_backbone', 'version.py')
    scope = {}
    with open(path) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='convnext_backbone',
    version=read_version(),
    description='ConvNeXt backbone, checkpoint loading and layer-wise lr '
    'decay for mmdet 3.x and mmsegmentation 1.x',
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['convnext_backbone*']),
    cmdclass={'build_py': BuildPyWithConfigs},
    # Tested: Python 3.11 (here) and 3.12 (an H100 image); torch 2.11
    # (H100), 2.13.0 and 2.14.1 (the two stack profiles).
    python_requires='>=3.11',
    # Only what both stacks share under one distribution name: mmengine,
    # mmcv, mmdet and mmseg come as upstream distributions (mmengine,
    # mmcv, ...) or as the onedl-* forks under the same import names, and
    # pip cannot tell one satisfies the other (it would install upstream
    # beside the fork). `import convnext_backbone` names what is missing;
    # the extras pick a stack, tools/install.sh installs either.
    install_requires=['torch>=2.11', 'numpy>=1.26,<3'],
    extras_require={
        'upstream': ['mmengine>=0.10.4,<1.0', 'mmdet==3.3.0',
                     'mmsegmentation==1.2.2'],
        'onedl': ['onedl-mmengine>=0.10.12', 'onedl-mmdetection>=3.5.1',
                  'onedl-mmsegmentation>=1.4.2'],
        'tests': ['pytest'],
    },
    license='Apache-2.0',
    license_files=['LICENSE'],
)
