"""Config mistakes as one line that names the key and the fix, found before any data or model is touched.

:func:`check_overrides` reads the command line before Hydra composes it (an unknown option or key would otherwise
end in Hydra's long error); :func:`check_missing` and :func:`check_paths` read the composed config.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.errors import HydraException, InstantiationException
from omegaconf import DictConfig, ListConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# How to set each mandatory key, keyed by its dotted name (a ``???`` in conf/).
MISSING_EXAMPLES = {
    "data.source.csv_path": "data.source.csv_path=/path/to/samples.csv",
    "data.source.root": "data.source.root=/path/to/films",
}
# Keys whose value is a path that must exist: (dotted key, "file" or "dir", example override).
REQUIRED_PATHS = (
    ("data.source.csv_path", "file", "data.source.csv_path=/path/to/samples.csv"),
    ("data.source.root", "dir", "data.source.root=/path/to/films"),
)


class ConfigError(ValueError):
    """A config value cxrad cannot run with; its message is one line naming the key and the fix."""


class DataError(ValueError):
    """The films or tables the config names are missing or unreadable; the message is the data source's own."""


@contextmanager
def data_errors() -> Iterator[None]:
    """Re-raise a data source's ``FileNotFoundError``/``ValueError`` as :class:`DataError` with its own message.

    Hydra wraps errors raised while it builds ``data.source`` in an ``InstantiationException`` whose text is
    several lines (target, repr, full key); the source's message already names the path and the fix.
    """
    try:
        yield
    except (FileNotFoundError, ValueError, InstantiationException) as error:
        cause = error.__cause__ if isinstance(error, InstantiationException) else error
        if isinstance(cause, DataError) or not isinstance(cause, FileNotFoundError | ValueError):
            raise
        raise DataError(str(cause)) from cause


def _fail(message: str) -> None:
    raise ConfigError(message)


def _options(group: str, conf_dir: Path) -> list[str]:
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def _hint(value: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _key_hint(key: str, known: Sequence[str]) -> str:
    """The closest sibling key (same parent), else the closest key anywhere."""
    parent = key.rpartition(".")[0]
    siblings = [k for k in known if k.rpartition(".")[0] == parent]
    return _hint(key, siblings) or _hint(key, known)


def _values(override: Override) -> list[str]:
    if override.is_sweep_override():
        return [str(v) for v in override.sweep_string_iterator()]
    return [str(override.get_value_element_as_str())]


def check_choices(overrides: Sequence[Override], conf_dir: Path = CONF_DIR) -> None:
    """Raise :class:`ConfigError` for ``group=option`` naming no file of ``conf/<group>/``, listing the choices."""
    for override in overrides:
        group = override.key_or_group
        if group.startswith("hydra") or not (conf_dir / group).is_dir() or override.type == OverrideType.DEL:
            continue
        choices = _options(group, conf_dir)
        for value in _values(override):
            if value not in choices and value != "null":
                _fail(f"{group}={value} is not an option; choose from {', '.join(choices)}{_hint(value, choices)}")


def _dotted_keys(node: DictConfig | ListConfig, prefix: str = "") -> Iterator[str]:
    if not isinstance(node, DictConfig):
        return
    for key in node:
        name = f"{prefix}{key}"
        yield name
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_interpolation():
            yield from _dotted_keys(child, f"{name}.")


def _is_missing(cfg: DictConfig, key: str) -> bool:
    """Whether ``key`` holds a literal ``???`` (an interpolation of a missing key is not itself one)."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, throw_on_missing=False) if parent else cfg
    return isinstance(node, DictConfig) and node._get_node(leaf)._is_missing()


def _group_choice(override: Override) -> str:
    """A group override as Hydra composes it, its ``+`` and ``@package`` kept (``+backbone@model.members.rd.backbone
    =resnet18_random``); a sweep's first option stands for all."""
    prefix = {OverrideType.ADD: "+", OverrideType.FORCE_ADD: "++"}.get(override.type, "")
    package = f"@{override.package}" if override.package else ""
    return f"{prefix}{override.key_or_group}{package}={_values(override)[0]}"


def check_keys(overrides: Sequence[Override], conf_dir: Path = CONF_DIR) -> None:
    """Raise :class:`ConfigError` for ``key=value`` naming a key the composed config lacks (use ``+key`` to add)."""
    in_group = [o for o in overrides if (conf_dir / o.key_or_group).is_dir() and o.type != OverrideType.DEL]
    groups = [_group_choice(o) for o in in_group]
    changes = [o for o in overrides if o.type == OverrideType.CHANGE and not (conf_dir / o.key_or_group).is_dir()]
    changes = [o for o in changes if not o.key_or_group.startswith("hydra")]
    if not changes:
        return
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose("config", overrides=groups)
    except HydraException:  # Hydra's own message is clearer for what this check does not cover
        return
    known = list(_dotted_keys(cfg))
    swept = {o.key_or_group for o in in_group if o.is_sweep_override()}  # keys may differ between its options
    for override in changes:
        key = override.key_or_group
        if key not in known and key.split(".")[0] not in swept:
            if key.startswith("model.") and "members" in cfg.model:  # a single model's key, given to the ensemble
                _fail(
                    f"{key} is not a config key of model={cfg.model.name}, which fuses {list(cfg.model.members)}; "
                    f"set a member's, e.g. model.members.{next(iter(cfg.model.members))}.{key[6:]}, or choose "
                    "one detector, e.g. model=patchcore"
                )
            _fail(f"{key} is not a config key{_key_hint(key, known)}; prefix + to add a new key (+{key}=...)")


def check_overrides(args: Sequence[str], conf_dir: Path = CONF_DIR) -> None:
    """Check a command line's overrides (``sys.argv[1:]`` without Hydra's own flags) before Hydra composes it."""
    words = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(words)
    except HydraException:  # a syntax error: Hydra reports it with the position
        return
    check_choices(overrides, conf_dir)
    check_keys(overrides, conf_dir)


def check_missing(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the first mandatory (``???``) key left unset, with an example."""
    missing = [k for k in _dotted_keys(cfg) if not k.startswith("hydra.") and _is_missing(cfg, k)]
    if missing:
        key = missing[0]
        example = MISSING_EXAMPLES.get(key, f"{key}=<value>")
        _fail(f"{key} is required by this config and not set; pass it, e.g. {example}")


def check_paths(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` when an input path the config names does not exist."""
    for key, kind, example in REQUIRED_PATHS:
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        path = Path(str(value)).expanduser()
        exists = path.is_file() if kind == "file" else path.is_dir()
        if not exists:
            _fail(
                f"{key}={value}: no such {'file' if kind == 'file' else 'folder'}; pass an existing one, e.g. {example}"
            )
