"""The entries of Python's, numpy's, torch's, cryptography's and Flower's Sphinx inventories
that these pages link to, written as ``objects.inv`` files for intersphinx.

The build reads these instead of downloading each project's inventory: it then works offline
and resolves the private module paths that type hints carry (``numpy.random._generator``,
``flwr.app.message.arrayrecord``, ...) to each project's public page. A name missing here is
reported by ``sphinx-build -n``: add it with its page.
"""

from __future__ import annotations

import importlib
import inspect
import zlib
from pathlib import Path

# project -> (documentation root, {name: (role, page#anchor)}); "$" in a page is the name.
_PY = "library/{}.html#$"
# Every public class and function of the standard-library modules type hints draw on, so a new
# hint (``collections.abc.MutableSet``) resolves without an entry by hand.
_STDLIB = ("argparse", "collections.abc", "enum", "logging", "os", "pathlib", "threading", "typing")


def _stdlib() -> dict[str, tuple[str, str]]:
    entries = {}
    for module in _STDLIB:
        mod = importlib.import_module(module)
        for name in dir(mod):
            obj = getattr(mod, name)
            if name.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            role = (
                "py:exception"
                if isinstance(obj, type) and issubclass(obj, BaseException)
                else ("py:class" if inspect.isclass(obj) else "py:function")
            )
            entries[f"{module}.{name}"] = (role, _PY.format(module))
    entries["typing.Any"] = ("py:data", _PY.format("typing"))
    return entries


PROJECTS: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "python": (
        "https://docs.python.org/3/",
        {
            **_stdlib(),
            "ValueError": ("py:exception", "library/exceptions.html#$"),
            "TypeError": ("py:exception", "library/exceptions.html#$"),
            "ImportError": ("py:exception", "library/exceptions.html#$"),
            "logging": ("py:module", "library/logging.html#module-logging"),
        },
    ),
    "numpy": (
        "https://numpy.org/doc/stable/",
        {
            "numpy.ndarray": ("py:class", "reference/generated/numpy.ndarray.html#$"),
            "numpy.dtype": ("py:class", "reference/generated/numpy.dtype.html#$"),
            **{
                f"numpy.{n}": ("py:class", "reference/arrays.scalars.html#$")
                for n in (
                    *("generic", "number", "integer", "signedinteger", "unsignedinteger"),
                    *("floating", "complexfloating", "bool", "bool_", "intp", "uintp"),
                    *(f"int{b}" for b in (8, 16, 32, 64)),
                    *(f"uint{b}" for b in (8, 16, 32, 64)),
                    *("float16", "float32", "float64", "complex64", "complex128"),
                )
            },
            "numpy.random.Generator": (
                "py:class",
                "reference/random/generator.html#numpy.random.Generator",
            ),
            "numpy.random._generator.Generator": (
                "py:class",
                "reference/random/generator.html#numpy.random.Generator",
            ),
            **{
                f"numpy.typing.{n}": ("py:data", "reference/typing.html#$")
                for n in ("ArrayLike", "DTypeLike", "NDArray")
            },
        },
    ),
    "torch": (
        "https://docs.pytorch.org/docs/stable/",
        {
            "torch.Tensor": ("py:class", "tensors.html#$"),
            "torch.nn.Module": ("py:class", "generated/torch.nn.Module.html#$"),
            "torch.nn.modules.module.Module": (
                "py:class",
                "generated/torch.nn.Module.html#torch.nn.Module",
            ),
        },
    ),
    "cryptography": (
        "https://cryptography.io/en/latest/",
        {
            f"cryptography.hazmat.primitives.asymmetric.x25519.{n}": (
                "py:class",
                "hazmat/primitives/asymmetric/x25519/#$",
            )
            for n in ("X25519PrivateKey", "X25519PublicKey")
        },
    ),
    "flwr": (
        "https://flower.ai/docs/framework/",
        {  # each class under its public name and the module path hints carry
            name: ("py:class", f"ref-api/{public}.html#{public}")
            for private, public in {
                "flwr.app.message.arrayrecord.ArrayRecord": "flwr.app.ArrayRecord",
                "flwr.app.message.context.Context": "flwr.app.Context",
                "flwr.app.message.configrecord.ConfigRecord": "flwr.app.ConfigRecord",
                "flwr.app.message.message.Message": "flwr.app.Message",
                "flwr.app.message.metricrecord.MetricRecord": "flwr.app.MetricRecord",
                "flwr.app.message.recorddict.RecordDict": "flwr.app.RecordDict",
                "flwr.compat.common.typing.FitRes": "flwr.common.FitRes",
                "flwr.compat.common.typing.Parameters": "flwr.common.Parameters",
                "flwr.server.client_manager.ClientManager": "flwr.server.ClientManager",
                "flwr.server.client_proxy.ClientProxy": "flwr.server.ClientProxy",
                "flwr.server.strategy.fedavg.FedAvg": "flwr.server.strategy.FedAvg",
                "flwr.serverapp.grid.grid.Grid": "flwr.serverapp.Grid",
                "flwr.serverapp.strategy.fedavg.FedAvg": "flwr.serverapp.strategy.FedAvg",
            }.items()
            for name in (private, public)
        },
    ),
}


def write(directory: Path) -> dict[str, tuple[str, str]]:
    """Write ``<project>.inv`` into ``directory``; the ``intersphinx_mapping`` reading them."""
    mapping = {}
    for project, (root, entries) in PROJECTS.items():
        lines = "".join(f"{name} {role} 1 {uri} -\n" for name, (role, uri) in entries.items())
        header = (
            "# Sphinx inventory version 2\n"
            f"# Project: {project}\n# Version: \n"
            "# The remainder of this file is compressed using zlib.\n"
        )
        path = directory / f"{project}.inv"
        path.write_bytes(header.encode() + zlib.compress(lines.encode()))
        mapping[project] = (root, str(path))
    return mapping
