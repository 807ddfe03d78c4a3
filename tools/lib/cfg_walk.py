"""Reading a config: its scope and every dict in a nested value."""
from typing import Any, Iterator

from mmengine.config import Config

from .errors import ConfigPrepareError


def iter_dicts(node: Any) -> Iterator[dict]:
    """Every dict in a nested config value, depth first, parents first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from iter_dicts(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from iter_dicts(value)


def config_scope(cfg: Config) -> str:
    """``'mmdet'`` or ``'mmseg'``: the framework a config is for."""
    scope = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmseg'):
        raise ConfigPrepareError(
            f"default_scope={scope!r}: the tools run mmdet ('mmdet') and "
            "mmsegmentation ('mmseg') configs; set default_scope in the "
            'config')
    return scope

