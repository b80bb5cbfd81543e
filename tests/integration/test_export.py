"""`jobtrail export`: finished jobs before a time, each line what the API shows of the
job and its timeline; the file appears whole or not at all; bad options are refused."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from jobtrail.core.model import utcnow
from jobtrail.receiver import export as exporting
from jobtrail.receiver.cli import main
from jobtrail.receiver.keys import STORE
from tests.integration.datadir import with_reports
from tests.integration.test_api import callback


async def lines(
    client: TestClient[Any, Any], tmp_path: Path, until: Any, provider: str | None = None
) -> list[Any]:
    out = tmp_path / "export.jsonl"
    out.unlink(missing_ok=True)
    await exporting.export(client.app[STORE], until, provider, out)
    return [json.loads(line) for line in out.read_text("utf-8").splitlines()]


async def test_each_line_is_the_job_and_timeline_the_api_shows(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    await callback(client, "done", "PROCESSING")
    await callback(client, "done", "COMPLETED", output={"media_url": ["https://cdn/done.mp4"]})
    await callback(client, "done", "COMPLETED", output={"media_url": ["https://cdn/done.mp4"]})  # duplicate
    await callback(client, "done", "QUEUED")  # late: ignored, but in the timeline
    await callback(client, "broke", "ERROR", error="GPU fell over <script>")
    await callback(client, "open", "PROCESSING")
    until = utcnow()
    await asyncio.sleep(0.01)
    await callback(client, "after", "ERROR", error="finished after the cut")

    exported = await lines(client, tmp_path, until)

    assert ["broke", "done"] == [line["job"]["id"] for line in exported], (
        "finished, before the cut, newest first"
    )
    for line in exported:
        job_id = line["job"]["id"]
        job = await (await client.get(f"/api/jobs/pixazo/{job_id}")).json()
        timeline = await (await client.get(f"/api/jobs/pixazo/{job_id}/events")).json()
        assert {"job": job, **timeline} == line
    done = exported[1]
    notes = [e["effect"]["note"] for e in done["events"] if e["effect"]]
    assert "late: the job was already succeeded" in notes, "the ignored report is in the timeline"
    assert 1 == len(done["duplicates"])


async def test_removal_at_the_export_cut_takes_only_exported_jobs_and_the_lines_stay_true(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    await callback(client, "broke", "ERROR", error="x")
    await callback(client, "quiet", "ERROR", error="y")
    await callback(client, "open", "PROCESSING")
    until = utcnow()
    await asyncio.sleep(0.01)
    await callback(client, "after", "ERROR", error="finished after the cut")
    exported = await lines(client, tmp_path, until)
    timelines = {line["job"]["id"]: line["events"] for line in exported}

    removed = await client.app[STORE].remove_jobs(0, until)

    assert set(timelines) == {job_id for _, _, job_id in removed.remove}
    for job_id in timelines:
        assert 404 == (await client.get(f"/api/jobs/pixazo/{job_id}")).status
    assert [] == await lines(client, tmp_path, until), "what is left before the cut is open"
    for job_id in ("open", "after"):
        assert 200 == (await client.get(f"/api/jobs/pixazo/{job_id}")).status
    kept = [events[-1]["type"] for events in timelines.values()]
    assert ["job.failed", "job.failed"] == kept, "the lines keep the timelines"


async def test_one_provider_and_an_early_cut(client: TestClient[Any, Any], tmp_path: Path) -> None:
    await callback(client, "p1", "ERROR", error="x")
    assert [] == await lines(client, tmp_path, utcnow() - timedelta(days=1))
    assert [] == await lines(client, tmp_path, utcnow(), provider="venice")
    assert ["p1"] == [
        line["job"]["id"] for line in await lines(client, tmp_path, utcnow(), provider="pixazo")
    ]


async def test_more_jobs_than_a_page(
    client: TestClient[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exporting, "PAGE", 3)
    for n in range(10):
        await callback(client, f"j{n}", "ERROR", error="x")
    await callback(client, "open", "PROCESSING")
    got = [line["job"]["id"] for line in await lines(client, tmp_path, utcnow())]
    assert [f"j{n}" for n in reversed(range(10))] == got


class Broken(Exception):
    pass


async def test_an_export_that_fails_leaves_no_file(
    client: TestClient[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        await callback(client, f"j{n}", "ERROR", error="x")
    real = exporting.history.duplicates
    calls = 0

    async def fails_on_the_third(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise Broken("the store went away")
        return await real(*args)

    monkeypatch.setattr(exporting.history, "duplicates", fails_on_the_third)
    out = tmp_path / "export.jsonl"
    with pytest.raises(Broken):
        await exporting.export(client.app[STORE], utcnow(), None, out)
    assert [] == leftovers(tmp_path), "neither the file nor its partial"


def leftovers(where: Path) -> list[Path]:
    return list(where.glob("*export.jsonl*"))


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return with_reports(tmp_path, monkeypatch, [("a", "failed"), ("b", "processing"), ("c", "succeeded")])


def test_the_command_writes_stdout_or_a_new_file(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 0 == main(["export"])
    captured = capsys.readouterr()
    assert ["c", "a"] == [json.loads(line)["job"]["id"] for line in captured.out.splitlines()]
    assert "exported 2 finished jobs" in captured.err
    out = tmp_path / "jobs.jsonl"
    assert 0 == main(["export", "--until", "2999-01-01T00:00:00Z", "--out", str(out)])
    assert 2 == len(out.read_text("utf-8").splitlines())
    assert "" == capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--until", "yesterday"], "not an ISO 8601 time"),
        (["--until", ""], "not an ISO 8601 time"),
        (["--provider", "nope"], "invalid choice"),
        (["--out", "{tmp}/missing/dir/x.jsonl"], "is not a directory"),
        (["--out", "{tmp}/taken.jsonl"], "exists; name a new file"),
    ],
)
def test_bad_options_are_refused_naming_them(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    taken = tmp_path / "taken.jsonl"
    taken.write_text("an earlier export\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    try:
        code = main(["export", *args])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code  # type: ignore[assignment]
    assert 2 == code
    assert said in capsys.readouterr().err
    assert "an earlier export\n" == taken.read_text(), "nothing overwritten"
    assert not (tmp_path / "missing").exists()


def test_no_database_no_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JOBTRAIL_STORE_URL", raising=False)
    monkeypatch.setenv("JOBTRAIL_DATA_DIR", str(tmp_path / "none"))
    assert 2 == main(["export"])
    assert "holds no jobtrail database" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
