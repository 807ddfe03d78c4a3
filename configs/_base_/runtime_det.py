# Runtime of the COCO configs (mmdet 3.x).
default_scope = 'mmdet'
# Registers ConvNeXt and ConvNeXtLayerDecayOptimizerConstructor (mmengine's
# root registries, found from every scope) and applies the torch compat
# fixes.
custom_imports = dict(
    imports=['convnext_backbone'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # tools/test.py --show-dir turns drawing on.
    visualization=dict(type='DetVisualizationHook'))

# On a machine without CUDA, tools/lib/device.py switches nccl to gloo
# (and AMP to fp32); the config itself stays as the paper's runs had it.
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False
