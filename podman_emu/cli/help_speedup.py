"""typer's help renderer without the two modules it imports but podman-emu's help never uses.

Depends on typer's internals (typer.rich_utils imports rich.markdown and rich.traceback at module
level); pyproject pins typer below the next minor release while this exists, and
tests/unit/cli/test_help_speedup.py checks that the real classes are used when needed.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def load_help_renderer() -> None:
    """Import typer's help renderer without the two modules it imports but podman-emu's help
    never uses: rich.markdown (markdown-it, ~20 ms) for "markdown" markup mode (this app uses
    "rich") and rich.traceback (pygments) for pretty exceptions (disabled above). Stand-ins that
    load the real class on first use are bound instead; sys.modules is left as it was, so any
    later import gets the real modules."""
    if "typer.rich_utils" in sys.modules:
        return

    class Deferred(type):
        real: tuple[str, str]

        def _load(cls) -> Any:
            module, name = cls.real
            return getattr(importlib.import_module(module), name)

        def __call__(cls, *args: Any, **kwargs: Any) -> Any:
            return cls._load()(*args, **kwargs)

        def __getattr__(cls, attribute: str) -> Any:
            return getattr(cls._load(), attribute)

    planted = []
    for module, name in (("rich.markdown", "Markdown"), ("rich.traceback", "Traceback")):
        if module in sys.modules:
            continue
        stand_in = types.ModuleType(module)
        setattr(stand_in, name, Deferred(name, (), {"real": (module, name)}))
        sys.modules[module] = stand_in
        planted.append(module)
    try:
        importlib.import_module("typer.rich_utils")
    finally:
        for module in planted:
            del sys.modules[module]
