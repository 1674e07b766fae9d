"""Lazy package exports: ``revgen.train.TrainConfig`` and friends without importing trl at ``import revgen``."""

from __future__ import annotations

from importlib import import_module


def lazy(package: str, exports: dict[str, str]):
    """A module ``__getattr__`` that imports ``package.<module>`` the first time one of its names is read."""

    def __getattr__(name: str):
        if name in exports:
            return getattr(import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
