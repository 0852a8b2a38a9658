"""The robustness suite (issue "hardening"): bad input, faults, access control and load.
Fixtures of tests/conftest.py apply here too; tests/ is put on the path for `helpers`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
