"""Configuration: file, environment winning, and a named error (exit 2) for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobtrail.core.settings import ConfigError, load
from jobtrail.receiver.cli import main

GOOD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_defaults_are_the_embedded_default(tmp_path: Path) -> None:
    settings = load(None, {})
    assert ("127.0.0.1", 8080, 1024 * 1024) == (settings.host, settings.port, settings.max_body_bytes)
    assert "sqlite:///jobtrail-data/jobtrail.db" == settings.store_url
    assert not settings.provider("pixazo").active


def test_the_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    config = tmp_path / "jobtrail.toml"
    config.write_text(
        'port = 9000\nhost = "127.0.0.1"\n'
        '[providers.oxen]\napi_key = "from-file"\nbase_url = "http://127.0.0.1:9999"\n'
        '[notify]\nslack_webhook_url = "https://hooks.slack.com/services/T/B/X"\n'
    )
    settings = load(config, {"JOBTRAIL_PORT": "9100", "OXEN_API_KEY": "from-env"})
    assert 9100 == settings.port
    assert ("from-env", "http://127.0.0.1:9999") == (
        settings.provider("oxen").api_key,
        settings.provider("oxen").base_url,
    )
    assert ("slack",) == settings.notify.sinks()


def test_jobtrail_config_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("port = 8181\n")
    assert 8181 == load(None, {"JOBTRAIL_CONFIG": str(config)}).port


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"JOBTRAIL_PORT": "eighty"}, "JOBTRAIL_PORT"),
        ({"JOBTRAIL_PORT": "70000"}, "JOBTRAIL_PORT"),
        ({"JOBTRAIL_PORT": "0"}, "JOBTRAIL_PORT"),
        ({"JOBTRAIL_HOST": "0.0.0.0"}, "JOBTRAIL_API_TOKEN"),
        ({"JOBTRAIL_HOST": "10.1.2.3"}, "JOBTRAIL_API_TOKEN"),
        ({"JOBTRAIL_API_TOKEN": "short"}, "JOBTRAIL_API_TOKEN"),
        ({"JOBTRAIL_WEBHOOK_TOKEN": "has space in it 123"}, "JOBTRAIL_WEBHOOK_TOKEN"),
        ({"JOBTRAIL_STORE_URL": "mysql://x"}, "JOBTRAIL_STORE_URL"),
        ({"JOBTRAIL_STORE_URL": "sqlite://"}, "JOBTRAIL_STORE_URL"),
        ({"JOBTRAIL_MAX_BODY_BYTES": "10"}, "JOBTRAIL_MAX_BODY_BYTES"),
        ({"JOBTRAIL_MAX_BODY_BYTES": "1e6"}, "JOBTRAIL_MAX_BODY_BYTES"),
        ({"JOBTRAIL_MAX_BODY_BYTES": "\u00b2"}, "JOBTRAIL_MAX_BODY_BYTES"),  # a digit to isdigit()
        ({"JOBTRAIL_PORT": "9" * 5000}, "JOBTRAIL_PORT"),
        ({"JOBTRAIL_REFUSED_BYTES_PER_MINUTE": "1000"}, "JOBTRAIL_REFUSED_BYTES_PER_MINUTE"),
        ({"JOBTRAIL_REFUSED_BYTES_PER_MINUTE": "-1"}, "JOBTRAIL_REFUSED_BYTES_PER_MINUTE"),
        ({"JOBTRAIL_REFUSED_BYTES_PER_MINUTE": "lots"}, "JOBTRAIL_REFUSED_BYTES_PER_MINUTE"),
        ({"JOBTRAIL_REFUSED_BYTES_PER_MINUTE": str(2**31)}, "JOBTRAIL_REFUSED_BYTES_PER_MINUTE"),
        ({"JOBTRAIL_PUBLIC_URL": "ftp://example.com"}, "JOBTRAIL_PUBLIC_URL"),
        ({"OXEN_BASE_URL": "not a url"}, "OXEN_BASE_URL"),
        ({"JOBTRAIL_NOTIFY_WEBHOOK_SECRET": "plainsecret"}, "JOBTRAIL_NOTIFY_WEBHOOK_SECRET"),
        ({"JOBTRAIL_NOTIFY_WEBHOOK_SECRET": "whsec_!!!notbase64"}, "JOBTRAIL_NOTIFY_WEBHOOK_SECRET"),
        ({"JOBTRAIL_SMTP_URL": "http://mail"}, "JOBTRAIL_SMTP_URL"),
        ({"JOBTRAIL_EMAIL_TO": "nobody"}, "JOBTRAIL_EMAIL_TO"),
        ({"JOBTRAIL_LOG_FORMAT": "xml"}, "JOBTRAIL_LOG_FORMAT"),
        ({"JOBTRAIL_DATA_DIR": "bad\x01dir"}, "JOBTRAIL_DATA_DIR"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(None, env)
    assert setting == caught.value.setting


def test_beyond_loopback_is_allowed_with_an_api_token() -> None:
    settings = load(None, {"JOBTRAIL_HOST": "0.0.0.0", "JOBTRAIL_API_TOKEN": "t" * 20})
    assert "0.0.0.0" == settings.host


def test_a_valid_standard_webhooks_secret_is_accepted() -> None:
    env = {
        "JOBTRAIL_NOTIFY_WEBHOOK_URL": "https://example.com/h",
        "JOBTRAIL_NOTIFY_WEBHOOK_SECRET": GOOD_SECRET,
    }
    assert GOOD_SECRET == load(None, env).notify.webhook_secret


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        ("port = [", "--config"),
        ("prot = 80", "prot"),
        ('[notify]\nslak = "x"', "notify.slak"),
        ('[providers.runway]\napi_key = "x"', "providers.runway"),
        ('[providers.oxen]\napikey = "x"', "providers.oxen.apikey"),
        ('port = "eighty"', "port"),
        ("port = true", "port"),
        ("providers = 3", "providers"),
        ("download_allow_hosts = [1, 2]", "download_allow_hosts"),
    ],
)
def test_bad_files_name_the_setting(tmp_path: Path, text: str, setting: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(config, {})
    assert setting == caught.value.setting


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "absent.toml", {})


def test_secrets_are_collected_for_redaction() -> None:
    settings = load(
        None,
        {
            "JOBTRAIL_API_TOKEN": "api-token-xxxxxxxxxx",
            "VENICE_API_KEY": "venice-key",
            "JOBTRAIL_SMTP_URL": "smtps://me:mail-pass@smtp.example.com:465",
            "JOBTRAIL_STORE_URL": "postgresql://jobtrail:db-pass-123@db.internal:5432/jobtrail",
        },
    )
    assert {"api-token-xxxxxxxxxx", "venice-key", "mail-pass", "db-pass-123"} <= set(settings.secrets())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://db:notaport/x", "port of a PostgreSQL URL"),
        ("postgresql:///x", "names a host"),
        ("mysql://db/x", "must be sqlite:///PATH or postgresql://"),
    ],
)
def test_a_bad_postgresql_url_is_refused_naming_the_setting(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load(None, {"JOBTRAIL_STORE_URL": url})
    assert "JOBTRAIL_STORE_URL" == caught.value.setting


def test_a_postgresql_url_is_taken_as_given() -> None:
    url = "postgresql://jobtrail@127.0.0.1:5432/jobtrail"
    assert url == load(None, {"JOBTRAIL_STORE_URL": url}).store_url


def test_the_cli_exits_2_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JOBTRAIL_PORT", "99999")
    assert 2 == main(["serve"])
    assert "JOBTRAIL_PORT" in capsys.readouterr().err


def test_the_cli_refuses_an_open_listener_without_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JOBTRAIL_HOST", "0.0.0.0")
    monkeypatch.delenv("JOBTRAIL_API_TOKEN", raising=False)
    assert 2 == main(["serve"])
    assert "JOBTRAIL_API_TOKEN" in capsys.readouterr().err


def test_listener_settings_come_from_the_file_and_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "jobtrail.toml"
    config.write_text("[listeners]\nsse_read_timeout = 45\npoll_min_interval = 2.5\npoll_concurrency = 8\n")
    tuning = load(config, {"JOBTRAIL_POLL_MAX_INTERVAL": "600", "JOBTRAIL_POLL_AGE_FACTOR": "0"}).listeners
    assert (45.0, 2.5, 600.0, 0.0, 8) == (
        tuning.sse_read_timeout,
        tuning.poll_min_interval,
        tuning.poll_max_interval,
        tuning.poll_age_factor,
        tuning.poll_concurrency,
    )


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"JOBTRAIL_SSE_READ_TIMEOUT": "soon"}, "JOBTRAIL_SSE_READ_TIMEOUT"),
        ({"JOBTRAIL_SSE_READ_TIMEOUT": "0"}, "JOBTRAIL_SSE_READ_TIMEOUT"),
        ({"JOBTRAIL_SSE_READ_TIMEOUT": "nan"}, "JOBTRAIL_SSE_READ_TIMEOUT"),
        ({"JOBTRAIL_POLL_MIN_INTERVAL": "inf"}, "JOBTRAIL_POLL_MIN_INTERVAL"),
        ({"JOBTRAIL_POLL_MIN_INTERVAL": "-1"}, "JOBTRAIL_POLL_MIN_INTERVAL"),
        ({"JOBTRAIL_POLL_MAX_INTERVAL": "1e12"}, "JOBTRAIL_POLL_MAX_INTERVAL"),
        (
            {"JOBTRAIL_POLL_MIN_INTERVAL": "30", "JOBTRAIL_POLL_MAX_INTERVAL": "10"},
            "JOBTRAIL_POLL_MAX_INTERVAL",
        ),
        ({"JOBTRAIL_POLL_CONCURRENCY": "0"}, "JOBTRAIL_POLL_CONCURRENCY"),
        ({"JOBTRAIL_POLL_CONCURRENCY": "2.5"}, "JOBTRAIL_POLL_CONCURRENCY"),
        ({"JOBTRAIL_POLL_CONCURRENCY": "100000"}, "JOBTRAIL_POLL_CONCURRENCY"),
        ({"JOBTRAIL_POLL_AGE_FACTOR": "-0.1"}, "JOBTRAIL_POLL_AGE_FACTOR"),
    ],
)
def test_bad_listener_values_name_the_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(None, env)
    assert setting == caught.value.setting


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        ("[listeners]\npoll_concurrency = true\n", "listeners.poll_concurrency"),
        ('[listeners]\nsse_read_timeout = "fast"\n', "listeners.sse_read_timeout"),
        ("[listeners]\npoll_every = 3\n", "listeners.poll_every"),
        ("listeners = 5\n", "listeners"),
    ],
)
def test_bad_listener_tables_name_the_setting(tmp_path: Path, text: str, setting: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(config, {})
    assert setting == caught.value.setting


def test_the_example_config_in_deploy_loads() -> None:
    example = Path(__file__).parents[2] / "deploy" / "jobtrail.example.toml"
    settings = load(example, {})
    assert (Path("/var/lib/jobtrail"), 4) == (settings.data_dir, settings.listeners.poll_concurrency)


def test_notification_rules_and_dispatch_settings_from_the_file(tmp_path: Path) -> None:
    config = tmp_path / "jobtrail.toml"
    config.write_text(
        '[notify]\nslack_webhook_url = "https://hooks.slack.com/services/T/B/X"\n'
        'webhook_url = "https://ops.example.com/in"\nwait_for_downloads = false\n'
        '[[notify.rules]]\nsinks = ["slack"]\nstatuses = ["failed"]\n'
        '[[notify.rules]]\nsinks = ["webhook"]\nstatuses = ["processing", "succeeded"]\n'
        'providers = ["oxen"]\n'
        '[dispatch]\nretry_schedule = "1s,1m,1h"\ndownload_max_bytes = 1000\n'
    )
    settings = load(config, {"JOBTRAIL_NOTIFY_WEBHOOK_SECRET": f"{GOOD_SECRET} whsec_" + "A" * 40})
    rules = settings.notify.effective_rules()
    assert [("slack",), ("webhook",)] == [r.sinks for r in rules]
    assert ("processing", "succeeded") == rules[1].statuses and ("oxen",) == rules[1].providers
    assert 2 == len(settings.notify.webhook_secrets)
    assert not settings.notify.wait_for_downloads
    assert ((1.0, 60.0, 3600.0), 1000) == (
        settings.dispatch.retry_delays,
        settings.dispatch.download_max_bytes,
    )


def test_without_rules_every_sink_hears_terminal_statuses() -> None:
    settings = load(None, {"JOBTRAIL_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X"})
    [rule] = settings.notify.effective_rules()
    assert (("slack",), ("succeeded", "failed", "cancelled")) == (rule.sinks, rule.statuses)


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"JOBTRAIL_RETRY_SCHEDULE": "5s,soon"}, "JOBTRAIL_RETRY_SCHEDULE"),
        ({"JOBTRAIL_RETRY_SCHEDULE": "-5s"}, "JOBTRAIL_RETRY_SCHEDULE"),
        ({"JOBTRAIL_RETRY_SCHEDULE": "\u00b2s"}, "JOBTRAIL_RETRY_SCHEDULE"),
        ({"JOBTRAIL_RETRY_SCHEDULE": "9" * 400 + "d"}, "JOBTRAIL_RETRY_SCHEDULE"),
        ({"JOBTRAIL_DOWNLOAD_MAX_BYTES": "0"}, "JOBTRAIL_DOWNLOAD_MAX_BYTES"),
        ({"JOBTRAIL_DOWNLOAD_TIMEOUT": "forever"}, "JOBTRAIL_DOWNLOAD_TIMEOUT"),
        ({"JOBTRAIL_NOTIFY_CONCURRENCY": "0"}, "JOBTRAIL_NOTIFY_CONCURRENCY"),
        ({"JOBTRAIL_NOTIFY_WAIT_FOR_DOWNLOADS": "maybe"}, "JOBTRAIL_NOTIFY_WAIT_FOR_DOWNLOADS"),
        ({"JOBTRAIL_NOTIFY_WEBHOOK_SIGNING_KEY": "whpk_AAAA"}, "JOBTRAIL_NOTIFY_WEBHOOK_SIGNING_KEY"),
        ({"JOBTRAIL_NOTIFY_WEBHOOK_SIGNING_KEY": "whsk_" + "A" * 8}, "JOBTRAIL_NOTIFY_WEBHOOK_SIGNING_KEY"),
        ({"JOBTRAIL_NOTIFY_WEBHOOK_SECRET": f"{GOOD_SECRET},nope"}, "JOBTRAIL_NOTIFY_WEBHOOK_SECRET"),
        ({"JOBTRAIL_NOTIFY_WEBHOOK_URL": "https://ops.example.com/in"}, "JOBTRAIL_NOTIFY_WEBHOOK_SECRET"),
    ],
)
def test_bad_dispatch_values_name_the_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(None, env)
    assert setting == caught.value.setting


@pytest.mark.parametrize(
    ("rules", "setting"),
    [
        ('rules = "all"\n', "notify.rules"),
        ('[[notify.rules]]\nsinks = ["email"]\n', "notify.rules[0].sinks"),
        ('[[notify.rules]]\nsinks = ["slack"]\nstatuses = ["done"]\n', "notify.rules[0].statuses"),
        ('[[notify.rules]]\nsinks = ["slack"]\nproviders = ["runway"]\n', "notify.rules[0].providers"),
        ('[[notify.rules]]\nsinks = ["slack"]\nwhen = "always"\n', "notify.rules[0].when"),
        ("[[notify.rules]]\nsinks = []\n", "notify.rules[0].sinks"),
    ],
)
def test_bad_rules_name_the_setting(tmp_path: Path, rules: str, setting: str) -> None:
    config = tmp_path / "bad.toml"
    head = '[notify]\nslack_webhook_url = "https://hooks.slack.com/services/T/B/X"\n'
    config.write_text(head + rules)
    with pytest.raises(ConfigError) as caught:
        load(config, {})
    assert setting == caught.value.setting


def test_signing_keys_are_secrets_too() -> None:
    key = "whsk_" + "B" * 43 + "="
    settings = load(
        None,
        {
            "JOBTRAIL_NOTIFY_WEBHOOK_URL": "https://ops.example.com/in",
            "JOBTRAIL_NOTIFY_WEBHOOK_SIGNING_KEY": key,
        },
    )
    assert key in settings.secrets()


def test_retention_keeps_deliveries_30_days_by_default_and_0_means_for_ever(tmp_path: Path) -> None:
    default = load(None, {}).retention
    assert (30, 30, 30, 0, 300.0, True) == (
        default.deliveries_days,
        default.rejected_days,
        default.notifications_days,
        default.jobs_days,
        default.interval,
        default.active,
    )
    forever = {"DELIVERIES": "0", "REJECTED": "0", "NOTIFICATIONS": "0"}
    kept = load(None, {f"JOBTRAIL_RETAIN_{name}_DAYS": n for name, n in forever.items()}).retention
    assert (0, 0, 0, False) == (
        kept.deliveries_days,
        kept.rejected_days,
        kept.notifications_days,
        kept.active,
    )
    alone = load(None, {f"JOBTRAIL_RETAIN_{name}_DAYS": "0" for name in ("DELIVERIES", "REJECTED")})
    assert alone.retention.active, "the notifications' window alone makes the pruner run"
    config = tmp_path / "r.toml"
    config.write_text(
        "[retention]\ndeliveries_days = 90\nrejected_days = 7\nnotifications_days = 14\ninterval = 60\n"
    )
    chosen = load(config, {}).retention
    assert (90, 7, 14, 60.0) == (
        chosen.deliveries_days,
        chosen.rejected_days,
        chosen.notifications_days,
        chosen.interval,
    )


def test_removing_old_jobs_is_asked_for_alone_and_makes_the_pruner_run(tmp_path: Path) -> None:
    only_jobs = {
        "JOBTRAIL_RETAIN_DELIVERIES_DAYS": "0",
        "JOBTRAIL_RETAIN_REJECTED_DAYS": "0",
        "JOBTRAIL_RETAIN_NOTIFICATIONS_DAYS": "0",
        "JOBTRAIL_RETAIN_JOBS_DAYS": "365",
    }
    chosen = load(None, only_jobs).retention
    assert (0, 0, 365) == (chosen.deliveries_days, chosen.rejected_days, chosen.jobs_days)
    assert chosen.active, "the leader runs the pruner for the jobs alone"
    config = tmp_path / "r.toml"
    config.write_text("[retention]\njobs_days = 90\n")
    assert 90 == load(config, {}).retention.jobs_days
    assert 7 == load(config, {"JOBTRAIL_RETAIN_JOBS_DAYS": "7"}).retention.jobs_days, "the environment wins"


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"JOBTRAIL_RETAIN_DELIVERIES_DAYS": "-1"}, "JOBTRAIL_RETAIN_DELIVERIES_DAYS"),
        ({"JOBTRAIL_RETAIN_DELIVERIES_DAYS": "1.5"}, "JOBTRAIL_RETAIN_DELIVERIES_DAYS"),
        ({"JOBTRAIL_RETAIN_DELIVERIES_DAYS": "thirty"}, "JOBTRAIL_RETAIN_DELIVERIES_DAYS"),
        ({"JOBTRAIL_RETAIN_REJECTED_DAYS": "99999999"}, "JOBTRAIL_RETAIN_REJECTED_DAYS"),
        ({"JOBTRAIL_RETAIN_REJECTED_DAYS": "\u00b2"}, "JOBTRAIL_RETAIN_REJECTED_DAYS"),
        ({"JOBTRAIL_RETAIN_NOTIFICATIONS_DAYS": "-1"}, "JOBTRAIL_RETAIN_NOTIFICATIONS_DAYS"),
        ({"JOBTRAIL_RETAIN_NOTIFICATIONS_DAYS": "36501"}, "JOBTRAIL_RETAIN_NOTIFICATIONS_DAYS"),
        ({"JOBTRAIL_RETAIN_NOTIFICATIONS_DAYS": "7 days"}, "JOBTRAIL_RETAIN_NOTIFICATIONS_DAYS"),
        ({"JOBTRAIL_RETAIN_NOTIFICATIONS_DAYS": "0x1e"}, "JOBTRAIL_RETAIN_NOTIFICATIONS_DAYS"),
        ({"JOBTRAIL_RETAIN_JOBS_DAYS": "-30"}, "JOBTRAIL_RETAIN_JOBS_DAYS"),
        ({"JOBTRAIL_RETAIN_JOBS_DAYS": "1e9"}, "JOBTRAIL_RETAIN_JOBS_DAYS"),
        ({"JOBTRAIL_RETAIN_JOBS_DAYS": "36501"}, "JOBTRAIL_RETAIN_JOBS_DAYS"),
        ({"JOBTRAIL_RETAIN_JOBS_DAYS": "30; DROP TABLE jobs"}, "JOBTRAIL_RETAIN_JOBS_DAYS"),
        ({"JOBTRAIL_RETENTION_INTERVAL": "0"}, "JOBTRAIL_RETENTION_INTERVAL"),
        ({"JOBTRAIL_RETENTION_INTERVAL": "nan"}, "JOBTRAIL_RETENTION_INTERVAL"),
    ],
)
def test_bad_retention_values_name_the_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(None, env)
    assert setting == caught.value.setting


def test_an_unknown_retention_key_is_named(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[retention]\nevents_days = 3\n")
    with pytest.raises(ConfigError) as caught:
        load(config, {})
    assert "retention.events_days" == caught.value.setting
