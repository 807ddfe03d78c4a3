# 3x schedule of the official ConvNeXt COCO runs: mmdet 3.x's own 1x
# schedule (linear warmup over 500 iterations from 0.001 x lr, lr x0.1 twice,
# validation every epoch, lrs for a total batch of 16) over 36 epochs with
# steps at 27 and 33, and AdamW (betas 0.9/0.999, weight decay 0.05) with
# layer-wise lr decay in place of SGD. mmdet 3.x's ConvNeXt configs warm up
# for 1000 iterations; the official runs for 500, as here.
# Each config sets `lr`, `decay_rate` and `num_layers`, and mixed precision
# (`type='AmpOptimWrapper'`) where the paper's run used it.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = _base_.param_scheduler
param_scheduler[1].update(end=max_epochs, milestones=[27, 33])

optim_wrapper = dict(
    # convnext_backbone's constructor (the paper's rule); mmdet's own is
    # registered as 'LearningRateDecayOptimizerConstructor'.
    constructor='ConvNeXtLayerDecayOptimizerConstructor',
    optimizer=dict(
        _delete_=True,  # mmdet's SGD momentum does not apply to AdamW
        type='AdamW',
        lr=1e-4,
        betas=(0.9, 0.999),
        weight_decay=0.05),
    paramwise_cfg=dict(decay_type='layer_wise'))

# `tools/train.py --auto-scale-lr` scales the lrs linearly from mmdet's
# base_batch_size 16 (8 GPUs x 2 images) to the actual total batch size
# (GPUs x train_dataloader.batch_size); off by default.
