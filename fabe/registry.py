"""Things chosen by name (ranking losses, decoding methods, defenses): one dict each, whose
keys are the choices the CLI, the page and the parametrized tests offer, and whose lookup
of an unknown name fails with the list of known ones instead of falling through to a
default."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class UnknownName(ValueError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class Registry(dict[str, T]):
    """A name -> implementation dict; `registry[name]` of an unknown name raises UnknownName
    ("Unknown <what>: X. Should be one of [...]")."""

    def __init__(self, what: str, items: dict[str, T]):
        super().__init__(items)
        self.what = what

    def __missing__(self, name: str) -> T:
        raise UnknownName(f"Unknown {self.what}: {name}. Should be one of {list(self)}")

    def check(self, names: list[str]) -> list[str]:
        """`names`, every one looked up (the first unknown one raises)."""
        for name in names:
            self[name]
        return names
