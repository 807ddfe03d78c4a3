"""convnext_backbone: a ConvNeXt backbone for OpenMMLab dense prediction.

Install with ``make install`` (builds mmcv's ops, see tools/install.sh); a
plain ``pip install -e .`` works when mmcv 2.x with ops is already present.
"""
import os.path as osp

from setuptools import find_packages, setup


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
    python_requires='>=3.8',
    install_requires=['torch>=1.10', 'mmengine>=0.10,<1.0',
                      'mmcv>=2.0.0rc4,<2.2.0'],
    extras_require={
        'det': ['mmdet>=3.0,<3.4', 'pycocotools', 'shapely', 'terminaltables'],
        'seg': ['mmsegmentation>=1.0,<1.3', 'ftfy', 'regex', 'prettytable'],
        'tests': ['pytest'],
    },
    license='Apache-2.0',
)
