"""Confinement of paths typed into the web page to the folders the app was started with.

A page served to collaborators must not become a file browser: a dataset, split, model or
output field that names `/etc/passwd`, climbs out with `..`, or goes through a symlink that
points elsewhere is refused before anything is read or written. `embedded` and hub ids
(`owner/name`) are names, not paths, and pass as they are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from fabe.embedded import EMBEDDED, EXAMPLES, VICTIM_NAMES

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class OutsideRoots(ValueError):
    """A typed path that resolves outside every allowed root."""

    def __init__(self, typed: str, resolved: Path, roots: Sequence[Path]) -> None:
        shown = ", ".join(str(r) for r in roots) or "none"
        where = "" if str(resolved) == typed else f" (resolves to {resolved})"
        super().__init__(f"{typed}{where}: outside the folders this app may use ({shown}); "
                         "start the app with --roots to allow another folder")
        self.path = resolved


def resolve_roots(roots: Sequence[str | Path]) -> list[Path]:
    """Each root with ~ expanded and symlinks followed, duplicates dropped, order kept."""
    return list(dict.fromkeys(Path(r).expanduser().resolve() for r in roots))


def confine(path: str | Path, roots: Sequence[str | Path]) -> Path:
    """`path` resolved (~ expanded, relative to the working directory, `..` collapsed,
    symlinks followed, dangling ones too) when it lies inside one of `roots`; a path that
    does not exist yet (an output folder) is judged by its resolved parent chain.
    Raises OutsideRoots otherwise."""
    typed = str(path)
    resolved = Path(typed).expanduser().resolve()
    allowed = resolve_roots(roots)
    if not any(resolved.is_relative_to(root) for root in allowed):
        raise OutsideRoots(typed, resolved, allowed)
    return resolved


def is_hub_id(name: str) -> bool:
    """`owner/name` as the Hub spells it, and not a local path that exists."""
    return bool(HUB_ID.fullmatch(name)) and ".." not in name and not Path(name).exists()


def confine_data(name: str, roots: Sequence[str | Path]) -> str:
    """A dataset or split as typed: `embedded` and `examples` as they are, anything else a
    confined path."""
    return name if name in (EMBEDDED, EXAMPLES) else str(confine(name, roots))


def confine_model(name: str, roots: Sequence[str | Path]) -> str:
    """A model, cleaner or victim as typed: `embedded` (and the embedded victims' names) and hub
    ids as they are, a local path confined."""
    return name if name in VICTIM_NAMES or is_hub_id(name) else str(confine(name, roots))
