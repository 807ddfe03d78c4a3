# 160k-iteration schedule of the official ConvNeXt ADE20K runs: AdamW
# (betas 0.9/0.999, weight decay 0.05) with stage-wise lr decay 0.9, mixed
# precision, linear warmup over 1500 iterations from 1e-6 x lr, then poly
# decay (power 1.0) to 0. Each config sets `lr` and `num_layers`.
max_iters = 160000
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=1500),
    dict(
        type='PolyLR',
        power=1.0,
        eta_min=0.0,
        begin=1500,
        end=max_iters,
        by_epoch=False)
]

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    # convnext_backbone's constructor (the paper's rule), named apart from
    # mmseg's own 'LearningRateDecayOptimizerConstructor' and its BEiT
    # 'LayerDecayOptimizerConstructor'.
    constructor='ConvNeXtLayerDecayOptimizerConstructor',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise'))

# Learning rates are for 8 GPUs x 2 images = 16. `tools/train.py
# --auto-scale-lr` scales them linearly to the actual total batch size
# (mmengine's Runner does this for mmseg as for mmdet); off by default.
auto_scale_lr = dict(enable=False, base_batch_size=16)
