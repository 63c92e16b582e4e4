"""Registries: one per family of interchangeable parts, the single list of what a config
value may name.

A new member is one decorated class or function::

    from asc.registry import POOLINGS

    @POOLINGS.register("median")
    class MedianPooling(nn.Module):
        ...

and nothing else: the config's allowed values, its error messages and the sweep shorthand
``model.variant`` are read from the registries.  The member may live in the family's home
(below) or in a module of its own inside the home package (asc/models/, asc/data/) or in
asc/extensions/: every module there is imported before the first lookup.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, Callable, Iterator

from asc.errors import AscError

EXTENSIONS = "asc.extensions"  # a package whose every module is imported by every registry


def _name(member) -> str:
    return f"{getattr(member, '__module__', '?')}.{getattr(member, '__qualname__', repr(member))}"


def _import_all(home: str) -> None:
    module = importlib.import_module(home)
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        importlib.import_module(f"{home}.{info.name}")


class Registry:
    """Key -> member (a class or a function) with per-member metadata.

    ``config_key`` names the config value the registry decides (for error messages);
    ``homes`` are the modules or packages that hold the members, imported on first lookup.
    """

    def __init__(self, name: str, config_key: str, homes: tuple[str, ...] = ()):
        self.name, self.config_key, self.homes = name, config_key, homes
        self._members: dict[str, Any] = {}
        self._meta: dict[str, dict] = {}
        self._loaded = False

    def register(self, key: str, **meta) -> Callable:
        """Decorator: register the class or function under ``key`` (``meta``: facts about
        it the family's builder reads, e.g. ``magnitude=True`` for a front-end)."""
        def deco(member):
            old = self._members.get(key)
            if old is not None and _name(old) != _name(member):  # same name: reloaded, replaced
                raise AscError(f"{self.name} {key!r} is registered twice "
                               f"({_name(old)} and {_name(member)})")
            self._members[key], self._meta[key] = member, dict(meta)
            return member
        return deco

    def unregister(self, key: str) -> None:
        self._members.pop(key, None)
        self._meta.pop(key, None)

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for home in (*self.homes, EXTENSIONS):
                _import_all(home)

    def keys(self) -> tuple[str, ...]:
        """Registered keys in registration order."""
        self._load()
        return tuple(self._members)

    def __contains__(self, key) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def get(self, key: str):
        if key not in self.keys():
            raise AscError(f"{self.config_key}={key!r} is not allowed; choose one of: {', '.join(self.keys())}")
        return self._members[key]

    def meta(self, key: str) -> dict:
        self.get(key)
        return self._meta[key]


def _parameters(member) -> dict:
    if isinstance(member, type):  # a class that keeps torch's (or object's) __init__ takes nothing
        owner = next(c for c in member.__mro__ if "__init__" in c.__dict__)
        if owner is object or owner.__module__.startswith("torch."):
            return {}
    return dict(inspect.signature(member).parameters)


def call_with(member: Callable, **available):
    """Call ``member`` with those of ``available`` it accepts (all of them if it takes
    ``**kwargs``): a member declares in its signature what it needs."""
    params = _parameters(member)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return member(**available)
    return member(**{k: v for k, v in available.items() if k in params})


POOLINGS = Registry("pooling", "model.pooling", ("asc.models",))
MODELS = Registry("model", "model.name", ("asc.models",))
FRONTENDS = Registry("front-end", "features.name", ("asc.features",))
MIXERS = Registry("mixer", "augment.mix", ("asc.augment",))
AUGMENTATIONS = Registry("augmentation stage", "augment", ("asc.augment",))  # all enabled ones run
LAYOUTS = Registry("data set layout", "data.name", ("asc.data", "asc.data.layouts"))
