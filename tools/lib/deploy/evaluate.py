"""A deploy bundle as the model of mmengine's test loop (``tools/test.py
CONFIG --bundle DIR``): the config's dataset, evaluator, ``--show-dir``
and ``--out`` as for a checkpoint, the predictions the bundle's.

Written here because mmengine's loops call ``model.test_step`` and
nothing in mmdet / mmseg runs an ONNX graph; mmdeploy's ``test.py`` does,
but with its own split graphs and mmdet's post-processing, not the
bundle's.
"""
from typing import Any, Dict, List, Optional

import torch
from mmengine.model import BaseModel

from .bundle import bundle_image, bundle_module
from .export import DeployError


class BundleModel(BaseModel):
    """``test_step`` reads each image from its file (``img_path``) as the
    bundle's ``predict.py`` does (:func:`.bundle.bundle_image`) and
    predicts with the bundle's ``Predictor``; the predictions go into the
    batch's data samples as mmdet's / mmseg's models put them
    (``pred_instances`` with boxes in original-image pixels, scores,
    labels and masks; ``pred_sem_seg`` at the original size).

    Args:
        bundle_dir (str): A folder ``tools/deploy.py`` wrote.
        threads (int, optional): onnxruntime intra-op threads.

    Raises:
        DeployError: Not a bundle, or onnxruntime cannot load its graph.
    """

    def __init__(self, bundle_dir: str, threads: Optional[int] = None
                 ) -> None:
        super().__init__()
        self.module = bundle_module(bundle_dir)
        try:
            self.predictor = self.module.Predictor(bundle_dir, threads)
        except self.module.BundleError as err:
            raise DeployError(f'--bundle: {err}') from None
        self.precision = self.predictor.spec.get('precision', 'fp32')

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise DeployError('a bundle only predicts (test_step)')

    def test_step(self, data: Dict[str, Any]) -> List[Any]:
        samples = data['data_samples']
        for sample in samples:
            image = bundle_image(sample.img_path)
            try:
                pred = self.predictor(image)
            except self.module.BundleError as err:
                raise DeployError(f'{sample.img_path!r}: {err}') from None
            attach_predictions(sample, pred)
        return samples


def attach_predictions(sample: Any, pred: Dict[str, Any]) -> None:
    """The bundle's predictions of one image into its data sample."""
    if 'label_map' in pred:
        from mmengine.structures import PixelData
        sample.pred_sem_seg = PixelData(
            data=torch.from_numpy(pred['label_map'].astype('int64'))[None])
        return
    from mmdet.models.utils import samplelist_boxtype2tensor
    from mmengine.structures import InstanceData
    # the ground truth as DetDataPreprocessor(boxtype2tensor=True) leaves
    # it for the evaluator and the visualizer: tensors, not box objects
    samplelist_boxtype2tensor([sample])
    instances = InstanceData(
        bboxes=torch.from_numpy(pred['boxes']).float(),
        scores=torch.from_numpy(pred['scores']).float(),
        labels=torch.from_numpy(pred['labels']).long())
    if 'masks' in pred:
        instances.masks = torch.from_numpy(pred['masks'])
    sample.pred_instances = instances
