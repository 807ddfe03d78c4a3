"""``--cfg-options`` merged with a check of their keys."""
import difflib
import inspect
from typing import Any, Dict, Optional

from mmengine.config import Config
from mmengine.runner import Runner

from .errors import UnknownConfigKeyError

#: Top-level keys mmengine's Runner (0.10.x) and the tools read although a
#: config may lack them; ``--cfg-options`` may add these.
RUNNER_KEYS = frozenset(
    set(inspect.signature(Runner.__init__).parameters) - {'self', 'cfg'}
    | {
        'activation_checkpointing', 'compile', 'custom_imports',
        'efficient_conv_bn_eval', 'find_unused_parameters',
        'model_wrapper_cfg', 'runner_type', 'sync_bn', 'tta_model',
        'tta_pipeline'
    })


def merge_cfg_options(cfg: Config, options: Optional[Dict[str, Any]]) -> None:
    """Merge ``--cfg-options`` into ``cfg`` after checking their keys.

    The rule: the first part of every key (``train_dataloader`` of
    ``train_dataloader.dataset.data_root``) must be a top-level key of the
    config or one that mmengine's Runner reads (:data:`RUNNER_KEYS`, e.g.
    ``randomness`` or ``find_unused_parameters``). Deeper parts are not
    checked, because new entries in existing dicts are legitimate (a new
    argument of a head, ``metainfo`` of a dataset).

    Args:
        cfg (Config): Changed in place.
        options (dict, optional): ``{dotted.key: value}`` as parsed by
            mmengine's ``DictAction``.

    Raises:
        UnknownConfigKeyError: Names each unknown key and the closest
            existing ones.
    """
    if not options:
        return
    known = set(cfg.keys()) | RUNNER_KEYS
    problems = []
    for key in options:
        top = key.split('.')[0]
        if top in known:
            continue
        close = difflib.get_close_matches(top, sorted(known), n=3, cutoff=0.6)
        hint = (f"did you mean {' or '.join(repr(c) for c in close)}?"
                if close else 'no similar key exists')
        problems.append(f"  '{key}': the config has no key '{top}'; {hint}")
    if problems:
        raise UnknownConfigKeyError(
            '--cfg-options names keys that are not in the config:\n' +
            '\n'.join(problems) + '\nOnly existing top-level keys (see the '
            'dumped config in the work dir) and the Runner\'s own options '
            f"({', '.join(sorted(RUNNER_KEYS - set(cfg.keys())))}) can be "
            'set; fix the spelling.')
    cfg.merge_from_dict(options)

