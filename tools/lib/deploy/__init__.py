"""``tools/deploy.py``: ONNX export of a detector or segmentor and its
agreement with the PyTorch model's own ``test_step`` (docs/deploy.md).

One concern per module: :mod:`.export` (graphs), :mod:`.compare`
(agreement), :mod:`.runtime` (onnxruntime inside mmdet's / mmseg's code),
:mod:`.tool` (the steps of ``tools/deploy.py``).
"""
from .export import DEFAULT_OPSET, DeployError
from .tool import (build_model, deploy, export_onnx_runtime, load_config,
                   synthetic_image, test_batch)

__all__ = [
    'DEFAULT_OPSET', 'DeployError', 'build_model', 'deploy',
    'export_onnx_runtime', 'load_config', 'synthetic_image', 'test_batch'
]
