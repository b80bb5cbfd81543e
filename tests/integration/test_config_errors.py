"""Every configuration error names the setting to change, and exits 2: the values `load`
cannot check alone (the host, the port) and a data directory that holds no database."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from jobtrail.receiver.cli import main


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("JOBTRAIL_CONFIG", "JOBTRAIL_STORE_URL", "JOBTRAIL_API_TOKEN", "JOBTRAIL_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JOBTRAIL_DATA_DIR", str(tmp_path / "data"))
    return monkeypatch


def test_a_host_that_does_not_resolve_names_jobtrail_host(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("JOBTRAIL_HOST", "not-a-host")
    env.setenv("JOBTRAIL_API_TOKEN", "api-token-0123456789abcdef")  # beyond loopback, a token is required
    assert 2 == main(["serve"])
    assert "configuration error: JOBTRAIL_HOST: 'not-a-host' does not resolve" in capsys.readouterr().err


def test_a_port_in_use_names_jobtrail_port(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env.setenv("JOBTRAIL_PORT", str(port))
        assert 2 == main(["serve"])
    assert f"JOBTRAIL_PORT: 127.0.0.1:{port} is in use by another program" in capsys.readouterr().err


def test_an_address_not_of_this_machine_names_jobtrail_host(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("JOBTRAIL_HOST", "192.0.2.1")  # TEST-NET-1: never this machine's
    env.setenv("JOBTRAIL_API_TOKEN", "api-token-0123456789abcdef")
    assert 2 == main(["serve"])
    assert "JOBTRAIL_HOST: 192.0.2.1 is not an address of this machine" in capsys.readouterr().err


def test_a_config_file_from_the_environment_is_named_so(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("JOBTRAIL_CONFIG", str(tmp_path / "missing.toml"))
    assert 2 == main(["jobs", "list"])
    assert "JOBTRAIL_CONFIG: cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("port = [")
    env.setenv("JOBTRAIL_CONFIG", str(bad))
    assert 2 == main(["serve"])
    assert f"JOBTRAIL_CONFIG: {bad} is not valid TOML" in capsys.readouterr().err
    assert 2 == main(["serve", "--config", str(bad)])
    assert "configuration error: --config: " in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [["jobs", "list"], ["jobs", "show", "pixazo", "p1"], ["outbox", "list"], ["outbox", "replay", "1"]],
)
def test_read_commands_refuse_a_data_directory_without_a_database(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """Regression: a mistyped JOBTRAIL_DATA_DIR created an empty database and answered
    "no jobs tracked yet"."""
    mistyped = tmp_path / "jobtrial-data"
    env.setenv("JOBTRAIL_DATA_DIR", str(mistyped))
    assert 2 == main(command)
    err = capsys.readouterr().err
    assert f"JOBTRAIL_DATA_DIR: {mistyped} holds no jobtrail database" in err
    assert not mistyped.exists(), "nothing was created"
    env.setenv("JOBTRAIL_STORE_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert 2 == main(command)
    assert f"JOBTRAIL_STORE_URL: {tmp_path / 'elsewhere.db'} holds no" in capsys.readouterr().err


def test_read_commands_work_once_the_database_exists(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 0 == main(["migrate"])
    assert 0 == main(["jobs", "list"])
    assert "no jobs tracked yet" in capsys.readouterr().out
