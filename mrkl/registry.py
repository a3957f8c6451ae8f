"""The expert registry: unique names, lookup, listing, JSON-schema export, plugin discovery.

Plugins: any installed distribution can add experts through the entry-point group
``mrkl.experts``. An entry point may name an :class:`~mrkl.expert.Expert`
instance, an ``Expert`` subclass (instantiated with no arguments), or a
callable returning an expert or a list of experts::

    [project.entry-points."mrkl.experts"]
    weather = "my_package.experts:WeatherExpert"
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Any, Iterable, Iterator

from mrkl.errors import RegistryError
from mrkl.expert import Expert

__all__ = ["ExpertRegistry", "ENTRY_POINT_GROUP"]

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "mrkl.experts"


class ExpertRegistry:
    """An ordered set of experts with unique names.

    Args:
        experts: experts to register, in order (the router lists them in this order).

    Attributes:
        origins: expert name → where it came from (``"builtin"``, ``"user"``,
            ``"plugin:<distribution>:<entry point>"``).
        load_errors: entry points that failed to load: ``(entry point, error message)``.

    Raises:
        RegistryError: two experts share a name.
    """

    def __init__(self, experts: Iterable[Expert] = (), *, origin: str = "user") -> None:
        self._experts: dict[str, Expert] = {}
        self.origins: dict[str, str] = {}
        self.load_errors: list[tuple[str, str]] = []
        for e in experts:
            self.register(e, origin=origin)

    def register(self, expert: Expert, *, origin: str = "user", replace: bool = False) -> Expert:
        """Add an expert.

        Raises:
            TypeError: ``expert`` is not an :class:`Expert`.
            RegistryError: the name is taken (unless ``replace=True``).
        """
        if not isinstance(expert, Expert):
            raise TypeError(f"expected an Expert, got {type(expert).__name__}")
        if expert.name in self._experts and not replace:
            raise RegistryError(
                f"an expert named '{expert.name}' is already registered (from {self.origins[expert.name]})"
            )
        self._experts[expert.name] = expert
        self.origins[expert.name] = origin
        return expert

    def unregister(self, name: str) -> None:
        """Remove an expert by name. Raises RegistryError if unknown."""
        self.get(name)
        del self._experts[name]
        del self.origins[name]

    def get(self, name: str) -> Expert:
        """The expert called ``name``.

        Raises:
            RegistryError: no such expert (the message lists the known names).
        """
        try:
            return self._experts[name]
        except KeyError:
            known = ", ".join(self._experts) or "(none)"
            raise RegistryError(f"no expert named '{name}'; known experts: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._experts

    def __iter__(self) -> Iterator[Expert]:
        return iter(self._experts.values())

    def __len__(self) -> int:
        return len(self._experts)

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._experts)

    def json_schema(self) -> list[dict[str, Any]]:
        """Every expert's name, description, origin, argument schema and examples."""
        return [dict(e.describe(), origin=self.origins[e.name]) for e in self]

    def load_plugins(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Register experts from installed entry points of ``group``.

        A plugin that fails to import or returns something that is not an Expert
        is skipped and recorded in :attr:`load_errors` (logged as a warning), so a
        broken plugin never stops the system. A plugin expert whose name is taken
        is skipped the same way.

        Returns:
            Names of the experts added.
        """
        added: list[str] = []
        for ep in entry_points(group=group):
            dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
            label = f"{dist}:{ep.name}"
            try:
                obj = ep.load()
                produced = _instantiate(obj)
                for e in produced:
                    self.register(e, origin=f"plugin:{label}")
                    added.append(e.name)
            except Exception as exc:  # a plugin's bug must not take the system down
                msg = f"{type(exc).__name__}: {exc}"
                self.load_errors.append((label, msg))
                log.warning("skipping mrkl plugin %s: %s", label, msg)
        return added


def _instantiate(obj: Any) -> list[Expert]:
    if isinstance(obj, Expert):
        return [obj]
    if isinstance(obj, type) and issubclass(obj, Expert):
        return [obj()]
    if callable(obj):
        out = obj()
        items = out if isinstance(out, (list, tuple)) else [out]
        if all(isinstance(i, Expert) for i in items):
            return list(items)
        raise TypeError("entry point callable must return an Expert or a list of Experts")
    raise TypeError(f"entry point must name an Expert, an Expert subclass or a factory, got {type(obj).__name__}")
