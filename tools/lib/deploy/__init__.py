"""``tools/deploy.py``: a detector or segmentor as a bundle that predicts
with onnxruntime, numpy and OpenCV alone, and its agreement with the
PyTorch model's own ``test_step`` (docs/deploy.md).

One concern per module: :mod:`.end2end` (what the graph computes),
:mod:`.operators` (mmcv's / mmdet's steps as standard ONNX operators),
:mod:`.export` (the export), :mod:`.precision` (the fp16 and int8
graphs), :mod:`.bundle` (preprocessing as data, the bundle's files),
:mod:`.predict` (the bundle's standalone script), :mod:`.compare`
(agreement), :mod:`.evaluate` (a bundle in mmengine's test loop:
``tools/test.py --bundle``), :mod:`.tool` (the steps of
``tools/deploy.py``).
"""
from .export import DEFAULT_OPSET, DeployError
from .tool import build_model, deploy, load_config, synthetic_image, test_batch

__all__ = [
    'DEFAULT_OPSET', 'DeployError', 'build_model', 'deploy', 'load_config',
    'synthetic_image', 'test_batch'
]
