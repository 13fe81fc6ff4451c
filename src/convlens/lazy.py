"""Package namespaces whose names load their modules on first use (PEP 562).

`convlens --help` and `--version` must answer at once, so importing a package for one light name (the
OIP settings, the attribution methods' names) must not load torch, matplotlib, Captum or scipy.
"""

from __future__ import annotations

import importlib


def lazy_namespace(package: str, names: dict[str, str | tuple[str, str]]):
    """Return a module `__getattr__` that imports `names[name]` (module, or (module, attribute)) when first read."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attribute = names[name] if isinstance(names[name], tuple) else (names[name], name)
        return getattr(importlib.import_module(f".{module}", package), attribute)

    return __getattr__
