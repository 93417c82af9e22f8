"""A subpackage's public names, each read from its module when first asked for (PEP 562), so
that `from signlab.<package> import X` imports no more than X's module needs."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, home: dict[str, str]) -> tuple[list[str], Callable[[str], Any]]:
    """`__all__` and a module `__getattr__` for `package` from `home` (name -> defining module)."""

    def __getattr__(name: str) -> Any:  # noqa: N807 (a module's __getattr__)
        if name in home:
            return getattr(importlib.import_module(home[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return sorted(home), __getattr__
