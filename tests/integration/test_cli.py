"""The terminal commands a daily user types: paging, --json, --version, options before or
after the subcommand, times with their zone, no Python reprs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from jobtrail.receiver.cli import main
from tests.integration.datadir import with_reports


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return with_reports(tmp_path, monkeypatch, [(f"p{n}", "processing") for n in range(5)])


def test_jobs_list_pages_with_the_cursor_it_prints(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []
    args = ["jobs", "list", "--limit", "2"]
    while True:
        assert 0 == main(args)
        out = capsys.readouterr().out.splitlines()
        seen += [line.split()[1] for line in out[1:] if line.startswith("pixazo")]
        more = [line for line in out if line.startswith("more: ")]
        if not more:
            break
        args = more[0].removeprefix("more: jobtrail ").split()
    assert ["p4", "p3", "p2", "p1", "p0"] == seen


def test_json_lines_have_the_apis_shape(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["jobs", "list", "--json"])
    jobs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert 5 == len(jobs) and {"provider", "id", "status", "downloads", "notifications"} <= set(jobs[0])
    assert 0 == main(["outbox", "list", "--json"])
    assert "" == capsys.readouterr().out, "no outbox items: no lines"


def test_times_carry_their_zone_and_details_no_reprs(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["jobs", "show", "pixazo", "p1"])
    out = capsys.readouterr().out
    assert re.search(r"updated   \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z", out), out
    assert "None" not in out and "=None" not in out
    assert "changed: first seen" in out, "each report says what it did"


def test_global_options_before_or_after_the_subcommand(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "other.toml"
    config.write_text('log_level = "loud"\n')
    for argv in (["--config", str(config), "jobs", "list"], ["jobs", "list", "--config", str(config)]):
        assert 2 == main(argv), argv  # the file was read, wherever the option stood
        assert "configuration error: log_level" in capsys.readouterr().err
    assert 0 == main(["jobs", "list"]), "without it, the same command works"


def test_version_and_bad_values(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert 0 == done.value.code
    assert re.fullmatch(r"jobtrail \S+\n", capsys.readouterr().out)
    for argv in (["jobs", "list", "--limit", "0"], ["outbox", "list", "--limit", "100000"]):
        with pytest.raises(SystemExit) as refused:
            main(argv)
        assert 2 == refused.value.code


def test_a_garbled_cursor_is_refused_naming_it(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert 2 == main(["jobs", "list", "--cursor", "!!not-a-cursor"])
    assert "--cursor" in capsys.readouterr().err


def test_deliveries_list_filters_and_pages(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["deliveries", "list", "--limit", "3"])
    out = capsys.readouterr().out.splitlines()
    assert ["5", "4", "3"] == [line.split()[0] for line in out[1:4]]
    assert "more: add --before 3" == out[-1]
    assert 0 == main(["deliveries", "list", "--before", "3", "--json"])
    assert [2, 1] == [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert 0 == main(["deliveries", "list", "--verdict", "rejected"])
    assert "no deliveries match" == capsys.readouterr().out.strip()


def test_outbox_retry_names_what_it_cannot_run(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert 1 == main(["outbox", "retry", "1"])
    assert "no outbox item 1" in capsys.readouterr().err
