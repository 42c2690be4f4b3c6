"""The configs of qgan_jax: one file per paper setting, each with `get_config()`; `load` and `override` serve
scripts (benchmarks) that take config paths and `field=value` overrides like main.py's `--config.field=value`."""

import ast
import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(path: str):
    """`get_config()` of the config file at `path` (relative to the repository root or absolute)."""
    file = pathlib.Path(path)
    file = file if file.is_absolute() else ROOT / file
    if not file.is_file():
        raise FileNotFoundError(f'config file {path!r} does not exist')
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def override(config, assignment: str) -> None:
    """Applies `field.path=value` to `config` in place; the value is parsed as a Python literal (a bare word is a
    string) and must fit the field's existing type, as with main.py's `--config.field=value`."""
    name, sep, text = assignment.partition('=')
    if not sep or not name:
        raise ValueError(f'override {assignment!r} must look like field.path=value')
    *parents, leaf = name.split('.')
    node = config
    for part in parents:
        if part not in node:
            raise ValueError(f'override {assignment!r}: the config has no field {name!r}')
        node = node[part]
    if leaf not in node:
        raise ValueError(f'override {assignment!r}: the config has no field {name!r}')
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    current = node[leaf]
    if isinstance(current, bool) != isinstance(value, bool) and current is not None:
        raise ValueError(f'override {assignment!r}: {name} is a {type(current).__name__}')
    if isinstance(current, float) and isinstance(value, int):
        value = float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if current is not None and not isinstance(value, type(current)):
        raise ValueError(f'override {assignment!r}: {name} is a {type(current).__name__}, got {value!r}')
    node[leaf] = value
