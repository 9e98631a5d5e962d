"""Optional dependencies of the simulation, imported only when used."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]

EXTRA = "simulate"


def require(module: str) -> ModuleType:
    """Import ``module`` or raise an ImportError that names the extra to install.

    Parameters
    ----------
    module
        A dotted module name, e.g. ``"sklearn.datasets"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        package = {"sklearn": "scikit-learn"}.get(top, top)
        raise ImportError(
            f"hierfed simulate needs {package} ({exc}); install the extra: "
            f'pip install "hierfed[{EXTRA}]"'
        ) from exc
