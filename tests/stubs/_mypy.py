"""Run the real mypy on generated stubs, the way a user's type checker would see them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def mypy_errors(target: Path) -> str:
    """mypy --strict output for `target` (a .pyi file or a folder of them); '' when it passes."""
    folder = target if target.is_dir() else target.parent
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", str(folder / ".mypy_cache"), "."],
        capture_output=True,
        text=True,
        check=False,
        cwd=folder,
    )
    return "" if result.returncode == 0 else result.stdout[-5000:] + result.stderr
