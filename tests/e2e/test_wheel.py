"""The package as users install it: a built wheel, in a fresh virtual environment, run
from a directory that is not the repository."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("core", "providers", "store", "runtime", "receiver", "listeners", "dispatch", "simulators")


def build_wheel(out: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = out.glob("jobtrail-*.whl")
    return wheel


def fresh_venv(where: Path, wheel: Path) -> Path:
    """A new venv holding the wheel. Its dependencies come from this test's environment,
    added as a plain path: the .pth files there (this checkout's editable install) are
    not run, so `jobtrail` can only be the wheel's."""
    venv.EnvBuilder(with_pip=False).create(where)
    python = where / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return where


def test_the_wheel_installs_one_namespace_and_runs_the_demo(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert {"jobtrail"} == tops, "only jobtrail/ at the top: no core, store, ... to collide"
    assert any(name.startswith("jobtrail/store/sql/sqlite/") for name in names), "the migrations ship"

    env_dir = fresh_venv(tmp_path / "venv", wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    probe = subprocess.run(
        [
            str(env_dir / "bin" / "python"),
            "-c",
            "import importlib.util, jobtrail.store; print(jobtrail.store.__file__); "
            f"print([r for r in {ROOMS!r} if importlib.util.find_spec(r)])",
        ],
        cwd=elsewhere,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    where, leaked = probe.stdout.splitlines()
    assert where.startswith(str(env_dir)), where
    assert "[]" == leaked, "a top-level room is importable"

    demo = subprocess.run(
        [str(env_dir / "bin" / "jobtrail"), "demo"],
        cwd=elsewhere,
        env={**clean, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert 0 == demo.returncode, demo.stdout[-2000:] + demo.stderr[-2000:]
