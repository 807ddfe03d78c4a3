# 3x schedule of the official ConvNeXt COCO runs: AdamW (betas 0.9/0.999,
# weight decay 0.05) with layer-wise lr decay, 36 epochs, lr x0.1 at epochs
# 27 and 33, linear warmup over 500 iterations from 0.001 x lr.
# Each config sets `lr`, `decay_rate` and `num_layers`, and mixed precision
# (`type='AmpOptimWrapper'`) where the paper's run used it.
max_epochs = 36
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    # The official runs warm up for 500 iterations; mmdet 3.x's ConvNeXt
    # configs use 1000.
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[27, 33],
        gamma=0.1)
]

optim_wrapper = dict(
    type='OptimWrapper',
    # convnext_backbone's constructor (the paper's rule); mmdet's own is
    # registered as 'LearningRateDecayOptimizerConstructor'.
    constructor='ConvNeXtLayerDecayOptimizerConstructor',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_type='layer_wise'))

# Learning rates are for 8 GPUs x 2 images = 16. `tools/train.py
# --auto-scale-lr` scales them linearly to the actual total batch size
# (GPUs x train_dataloader.batch_size); off by default.
auto_scale_lr = dict(enable=False, base_batch_size=16)
