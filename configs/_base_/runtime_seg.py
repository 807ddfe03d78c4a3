# Runtime of the ADE20K configs: mmseg 1.x's own default runtime (scope
# mmseg, nccl, cudnn_benchmark on, SegTTAModel for `tools/test.py --tta`,
# which feeds it the dataset's `tta_pipeline`) plus this package and the
# iteration-based hooks, which mmseg keeps in its schedule files.
_base_ = 'mmseg::_base_/default_runtime.py'
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

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=16000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # tools/test.py --show-dir turns drawing on.
    visualization=dict(type='SegVisualizationHook'))
