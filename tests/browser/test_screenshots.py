"""The README's pictures stay takeable: `python -m docs.screenshots` on a fresh run."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import CHROMIUM

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_pictures_are_taken_from_a_real_run(chromium: Any, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "docs.screenshots", "--out", str(tmp_path), "--chromium", CHROMIUM],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert 0 == done.returncode, done.stderr[-3000:]
    shots = sorted(p.name for p in tmp_path.glob("*.png"))
    readme = (ROOT / "README.md").read_text()
    assert shots == sorted(f"console-{n}.png" for n in ("overview", "jobs", "job", "outbox", "deliveries"))
    for name in shots:
        head = (tmp_path / name).read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n", name
        width, height = struct.unpack(">II", head[16:24])
        assert 1280 == width and height >= 600, (name, width, height)
        assert f"(docs/{name})" in readme, f"the README shows {name}"
