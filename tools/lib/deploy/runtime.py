"""Running exported graphs in onnxruntime inside mmdet's / mmseg's own
inference code.

:func:`load_runtime` builds the config's model (random weights: nothing is
read from a checkpoint) and replaces each network that
:mod:`.export` exported by a call into onnxruntime:

- detectors: ``predict`` runs ``end2end.onnx`` for the features and the
  dense head's outputs, then mmdet's ``predict_by_feat`` of the dense head
  (anchors, top-k, NMS, decoding, clipping to the image, rescaling) and,
  for two-stage models, mmdet's ``roi_head.predict`` with the bbox / mask
  heads' ``forward`` replaced by their graphs (RoIAlign, class-specific
  decoding, NMS or soft-NMS per the config, mask pasting are mmdet's);
- segmentors: ``encode_decode`` runs ``end2end.onnx`` and mmseg's
  ``decode_head.predict_by_feat`` (the resize), so mmseg's ``whole`` and
  ``slide`` inference and its ``postprocess_result`` are unchanged.

The returned model's ``test_step(data)`` is then mmdet's / mmseg's, with
onnxruntime doing the network work.
"""
import copy
import json
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .export import MANIFEST, MODEL_CONFIG, DeployError


def _ort():
    try:
        import onnxruntime
    except ImportError as err:
        raise DeployError(
            'onnxruntime is not installed; install the deploy '
            'requirements: pip install -r requirements/deploy.txt '
            '(make deploy)') from err
    return onnxruntime


class OrtGraph:
    """One ONNX graph in an onnxruntime session, called with and returning
    torch tensors (fp32 out, whatever the graph's precision).

    Args:
        path (str): The ``.onnx`` file.
        threads (int, optional): Intra-op threads. Defaults to torch's.
        input_shape (list[int], optional): The only input shape a static
            graph accepts, checked before each call.
    """

    def __init__(self,
                 path: str,
                 threads: Optional[int] = None,
                 input_shape: Optional[Sequence[int]] = None) -> None:
        ort = _ort()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3
        self.path = path
        self.session = ort.InferenceSession(
            path, options, providers=['CPUExecutionProvider'])
        self.input = self.session.get_inputs()[0]
        self.fp16 = self.input.type == 'tensor(float16)'
        self.input_shape = list(input_shape) if input_shape else None
        #: (input, outputs) of every call while ``record`` is a list
        self.record: Optional[List[Any]] = None

    def __call__(self, inputs: torch.Tensor) -> List[torch.Tensor]:
        if self.input_shape and list(inputs.shape) != self.input_shape:
            raise DeployError(
                f'{osp.basename(self.path)} was exported for inputs of shape '
                f'{self.input_shape}; this batch is {list(inputs.shape)} '
                'after the test pipeline: export again with --dynamic or '
                f'--shape {inputs.shape[2]} {inputs.shape[3]}')
        array = inputs.detach().cpu().numpy()
        array = array.astype(np.float16 if self.fp16 else np.float32)
        outs = self.session.run(None, {self.input.name: array})
        outs = [torch.from_numpy(o).float() for o in outs]
        if self.record is not None:
            self.record.append((inputs.detach().clone(), outs))
        return outs


class _HeadForward:
    """A RoI head's ``forward`` served by its graph."""

    def __init__(self, graph: OrtGraph, tuple_out: bool) -> None:
        self.graph, self.tuple_out = graph, tuple_out

    def __call__(self, feats: torch.Tensor) -> Any:
        outs = self.graph(feats)
        return tuple(outs) if self.tuple_out else outs[0]


def _unflatten(flat: List[torch.Tensor], structure: List[int]) -> tuple:
    outs, i = [], 0
    for n in structure:
        if n < 0:
            outs.append(flat[i])
            i += 1
        else:
            outs.append(list(flat[i:i + n]))
            i += n
    return tuple(outs)


def _detector_outputs(graph: OrtGraph, meta: Dict[str, Any],
                      inputs: torch.Tensor) -> Tuple[tuple, tuple]:
    """The end2end graph's outputs of a detector: (features, dense head
    outputs); the features are empty for a single-stage detector."""
    flat = graph(inputs)
    num_feats = meta['num_feats']
    return (tuple(flat[:num_feats]),
            _unflatten(flat[num_feats:], meta['structure']))


def _proposals(model: nn.Module, head_outs: tuple, data_samples: list):
    """mmdet's RPN proposals from the RPN head's outputs (not rescaled)."""
    return model.rpn_head.predict_by_feat(
        *head_outs, batch_img_metas=[s.metainfo for s in data_samples],
        rescale=False)


def _detector_predict(model: nn.Module, graph: OrtGraph, meta: Dict[str,
                                                                   Any]):
    two_stage = meta['num_feats'] > 0

    def predict(batch_inputs: torch.Tensor,
                batch_data_samples: list,
                rescale: bool = True) -> list:
        # mmdet's TwoStageDetector / SingleStageDetector.predict, with the
        # features and the dense head's outputs from the graph
        feats, head_outs = _detector_outputs(graph, meta, batch_inputs)
        metas = [s.metainfo for s in batch_data_samples]
        if two_stage:
            proposals = _proposals(model, head_outs, batch_data_samples)
            results = model.roi_head.predict(
                feats, proposals, batch_data_samples, rescale=rescale)
        else:
            results = model.bbox_head.predict_by_feat(
                *head_outs, batch_img_metas=metas, rescale=rescale)
        return model.add_pred_to_datasample(batch_data_samples, results)

    return predict


def _segmentor_encode_decode(model: nn.Module, graph: OrtGraph):

    def encode_decode(inputs: torch.Tensor, batch_img_metas: list):
        # mmseg's EncoderDecoder.encode_decode with the graph for
        # extract_feat + decode_head.forward
        return model.decode_head.predict_by_feat(
            graph(inputs)[0], batch_img_metas)

    return encode_decode


class Runtime:
    """An mmdet / mmseg model whose networks run in onnxruntime.

    Attributes:
        model (nn.Module): The model; ``model.test_step(data)`` predicts.
        graphs (dict[str, OrtGraph]): By graph name.
        manifest (dict): What the export wrote (:data:`MANIFEST`).
    """

    def __init__(self, model: nn.Module, graphs: Dict[str, OrtGraph],
                 manifest: Dict[str, Any]) -> None:
        self.model, self.graphs, self.manifest = model, graphs, manifest

    def test_step(self, data: dict) -> list:
        with torch.no_grad():
            return self.model.test_step(data)

    def features(self, inputs: torch.Tensor) -> Optional[tuple]:
        """A detector's ``extract_feat(inputs)`` from its graph (None for a
        segmentor, whose graph does not output its features)."""
        num_feats = self.manifest['graphs'][0]['num_feats'] \
            if self.manifest['kind'] != 'segmentor' else 0
        if not num_feats:
            return None
        with torch.no_grad():
            return tuple(self.graphs['end2end'](inputs)[:num_feats])

    def forward_tensor(self, inputs: torch.Tensor,
                       data_samples: list) -> Any:
        """The graphs' counterpart of ``model(inputs, data_samples,
        mode='tensor')`` (mmdet's / mmseg's ``_forward``): the segmentor's
        logits before the resize; a single-stage detector's head outputs;
        a two-stage detector's RoI head outputs on the RPN's proposals
        (mmdet's ``rpn_head.predict_by_feat`` between the graphs)."""
        graph, meta = self.graphs['end2end'], self.manifest['graphs'][0]
        with torch.no_grad():
            if self.manifest['kind'] == 'segmentor':
                return graph(inputs)[0]
            feats, head_outs = _detector_outputs(graph, meta, inputs)
            if not feats:
                return head_outs
            proposals = _proposals(self.model, head_outs, data_samples)
            return (self.model.roi_head.forward(feats, proposals,
                                                data_samples), )

    def start_recording(self) -> None:
        for graph in self.graphs.values():
            graph.record = []

    def stop_recording(self) -> Dict[str, list]:
        records = {}
        for name, graph in self.graphs.items():
            records[name], graph.record = graph.record or [], None
        return records


def load_runtime(out_dir: str,
                 cfg: Any = None,
                 threads: Optional[int] = None) -> Runtime:
    """The runtime of the graphs :func:`.export.export_model` wrote
    into ``out_dir``.

    Args:
        out_dir (str): The export directory.
        cfg (Config, optional): The model's config; defaults to the one
            saved at export (:data:`MODEL_CONFIG`).
        threads (int, optional): onnxruntime's intra-op threads. Defaults
            to torch's.
    """
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope

    with open(osp.join(out_dir, MANIFEST)) as f:
        manifest = json.load(f)
    if cfg is None:
        cfg = Config.fromfile(osp.join(out_dir, MODEL_CONFIG))
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    import importlib
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model_cfg = copy.deepcopy(cfg.model)
    if 'backbone' in model_cfg:
        model_cfg.backbone.init_cfg = None  # no download: weights unused
    model = revert_sync_batchnorm(registry.build(model_cfg)).eval()
    graphs = {}
    for entry in manifest['graphs']:
        shape = manifest['input_shape'] if entry['role'] == 'end2end' \
            else None
        graphs[entry['name']] = OrtGraph(
            osp.join(out_dir, entry['file']), threads, shape)
    main = graphs['end2end']
    main_meta = manifest['graphs'][0]
    if manifest['kind'] == 'segmentor':
        model.encode_decode = _segmentor_encode_decode(model, main)
    else:
        model.predict = _detector_predict(model, main, main_meta)
        for entry in manifest['graphs'][1:]:
            name, role = entry['name'], entry['role']
            heads = getattr(model.roi_head, role)
            head = (heads[int(name.rsplit('_', 1)[1])]
                    if isinstance(heads, nn.ModuleList) else heads)
            head.forward = _HeadForward(graphs[name], entry['tuple_out'])
    return Runtime(model, graphs, manifest)
