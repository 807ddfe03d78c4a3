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
# Random states saved in every checkpoint and restored on --resume, so a
# single-process run with a fixed seed, deterministic=True and num_workers=0
# resumes exactly (tests/test_resume.py); a multi-process run resumes with
# its config's seeds, as plain mmengine does. A config that sets its own
# custom_hooks replaces this list: keep the hook in it.
custom_hooks = [dict(type='RandomStateHook')]
