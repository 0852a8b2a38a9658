"""What every tab needs to know about the app it lives in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class AppContext:
    runs_dir: Path
