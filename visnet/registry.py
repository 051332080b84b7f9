"""A small name -> object registry, so command-line names resolve to code in one place."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


class Registry:
    """Maps names to classes or functions of one kind (readers, embedders, classifiers...).

    Args:
        kind: str. What the registry holds, used in error messages ("reader", "embedder").

    Example:

    >>> embedders = Registry("embedder")
    >>> @embedders.register("double")
    ... def double(x):
    ...     return 2 * x
    >>> embedders.lookup("double")(3)
    6
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator registering a class or function under `name`."""

        def decorator(obj: Any) -> Any:
            key = name.lower()
            if key in self._entries and self._entries[key] is not obj:
                raise ValueError(f"A {self.kind} named '{name}' is already registered.")
            self._entries[key] = obj
            return obj

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def lookup(self, name: str) -> Any:
        """Returns the registered class or function, or raises a ValueError listing the names."""
        if not isinstance(name, str) or name.lower() not in self._entries:
            raise ValueError(
                f"Unknown {self.kind}: {name!r}. Available: {', '.join(self.names())}."
            )
        return self._entries[name.lower()]

    def get(self, identifier: Any, **kwargs: Any) -> Any:
        """Resolves a name, a config dict or an instance to an instance.

        Args:
            identifier: a registered name (`"hog"`), a dict `{"name": ..., **config}`,
                or an object that is already an instance (returned as is).
            **kwargs: constructor arguments used with a name.
        """
        if isinstance(identifier, str):
            return self._build(identifier, kwargs)
        if isinstance(identifier, dict):
            config = dict(identifier)
            if "name" not in config:
                raise ValueError(
                    f"A {self.kind} config dict needs a 'name' key. Received: {identifier!r}"
                )
            name = config.pop("name")
            config.update(kwargs)
            return self._build(name, config)
        if identifier is None:
            raise ValueError(f"Expected a {self.kind} name, config dict or instance. Received: None")
        return identifier

    def _build(self, name: str, kwargs: dict[str, Any]) -> Any:
        entry = self.lookup(name)
        if isinstance(entry, type):
            parameters = inspect.signature(entry).parameters
            takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
            unknown = sorted(k for k in kwargs if k not in parameters)
            if unknown and not takes_any:
                raise ValueError(
                    f"The {self.kind} '{name}' does not take {', '.join(unknown)}. "
                    f"It takes: {', '.join(parameters) or 'no options'}."
                )
            return entry(**kwargs)
        if kwargs:
            raise ValueError(
                f"The {self.kind} '{name}' is a function and takes no options. Received: {kwargs!r}"
            )
        return entry
