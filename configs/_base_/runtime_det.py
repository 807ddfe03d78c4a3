# Runtime of the COCO configs: mmdet 3.x's own default runtime (scope mmdet,
# logger every 50 iterations, a checkpoint every epoch, DetVisualizationHook
# (tools/test.py --show-dir turns drawing on), nccl, cudnn_benchmark off)
# plus this package.
_base_ = 'mmdet::_base_/default_runtime.py'
# Registers ConvNeXt and ConvNeXtLayerDecayOptimizerConstructor (mmengine's
# root registries, found from every scope) and applies the torch compat
# fixes. On a machine without CUDA, tools/lib/device.py switches nccl to gloo
# (and AMP to fp32); the config itself stays as the paper's runs had it.
custom_imports = dict(
    imports=['convnext_backbone'], allow_failed_imports=False)
