"""Name → object registries for methods (and anything else that plugs in by name).

Built-in methods live in the top-level ``methods/`` folder (installed as ``kore_bench.methods``)
and register themselves on import. Users add their own from a folder (``--include-path``) or
from an installed package exposing the ``kore_bench.methods`` entry-point group.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Generic, TypeVar

from .errors import KoreBenchError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from stable CLI keys to objects, with nearest-name errors."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@METHODS.register("lora")``."""

        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise KoreBenchError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        if name not in self._items:
            raise UnknownNameError(self.kind, name, self._items)
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items


METHODS: Registry = Registry("method")


def load_builtin_methods() -> None:
    """Import every module of the built-in ``kore_bench.methods`` package (they self-register)."""
    import kore_bench.methods as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{info.name}")
    for ep in entry_points(group="kore_bench.methods"):
        ep.load()


def load_plugin_folder(folder: Path | str) -> list[str]:
    """Import every ``*.py`` file of a user folder so its methods register; returns module names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise KoreBenchError(f"--include-path {folder}: not a directory")
    loaded = []
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        mod_name = f"kore_bench_user_{digest}_{path.stem}"
        if mod_name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except KoreBenchError:
            del sys.modules[mod_name]
            raise
        except Exception as e:  # a plugin that cannot be imported is bad input: name it, no traceback
            del sys.modules[mod_name]
            line = f", line {e.lineno}" if isinstance(e, SyntaxError) else ""
            raise KoreBenchError(f"--include-path {path}{line}: the plugin does not import "
                                 f"({type(e).__name__}: {e})") from None
        loaded.append(mod_name)
    return loaded


def load_methods(include_paths: Iterable[Path | str] = ()) -> Registry:
    """The method registry with built-ins and the user's folders loaded."""
    load_builtin_methods()
    for p in include_paths:
        load_plugin_folder(p)
    return METHODS
