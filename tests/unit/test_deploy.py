"""The deployment files agree with the code: what they set exists, what they name is
there. (No Docker engine runs here: the files are read, not run.)"""

from __future__ import annotations

import re
from pathlib import Path

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


def compose() -> dict:  # type: ignore[type-arg]
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
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
    wanted = set(re.findall(r"\$\{(\w+)", (DEPLOY / "compose.yaml").read_text()))
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
