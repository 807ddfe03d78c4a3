# Runtime of the ADE20K configs (mmsegmentation 1.x).
default_scope = 'mmseg'
# Registers ConvNeXt and ConvNeXtLayerDecayOptimizerConstructor (mmengine's
# root registries, found from every scope) and applies the torch compat
# fixes.
custom_imports = dict(
    imports=['convnext_backbone'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=16000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # tools/test.py --show-dir turns drawing on.
    visualization=dict(type='SegVisualizationHook'))

# On a machine without CUDA, tools/lib/device.py switches nccl to gloo
# (and AMP to fp32); the config itself stays as the paper's runs had it.
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)

log_level = 'INFO'
load_from = None
resume = False

# Multi-scale + flip test: `tools/test.py --tta` wraps the model in this and
# feeds it the dataset's `tta_pipeline`.
tta_model = dict(type='SegTTAModel')
