# Mask R-CNN, ConvNeXt-T (IN-1K pretrained), COCO 1x: the schedule for quick
# experiments (12 epochs, lr x0.1 at epochs 8 and 11); everything else as in
# mask_rcnn_convnext_t.py. The paper reports 3x results only.
_base_ = './mask_rcnn_convnext_t.py'

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = _base_.param_scheduler
param_scheduler[1].update(end=max_epochs, milestones=[8, 11])
