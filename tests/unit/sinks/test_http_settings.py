"""[http]: off without the table, listen address parsed and checked at parse time."""

from __future__ import annotations

import pytest

from agent.config import parse_config
from agent.core.errors import ConfigError
from agent.core.tables import Table
from agent.sinks.http.settings import HttpSettings, HttpSettingsError, parse_listen

BASE = {
    "agent": {"device_id": "ipc1"},
    "robots": [{"id": "arm1", "bundle": "default", "source": {"kind": "simulator"}}],
}


def _settings(table: dict) -> HttpSettings:
    return HttpSettings.from_table(Table(table, "http"))


def test_without_an_http_table_there_is_no_endpoint():
    assert parse_config(BASE).http is None


def test_an_empty_http_table_listens_on_loopback_9108():
    config = parse_config({**BASE, "http": {}})
    assert config.http == HttpSettings(host="127.0.0.1", port=9108)
    assert config.http.listen == "127.0.0.1:9108"


@pytest.mark.parametrize(
    ("value", "host", "port"),
    [
        ("127.0.0.1:9108", "127.0.0.1", 9108),
        ("0.0.0.0:9200", "0.0.0.0", 9200),
        (":9108", "", 9108),
        ("[::1]:9108", "::1", 9108),
        ("edge-box.plant.lan:80", "edge-box.plant.lan", 80),
    ],
)
def test_listen_addresses(value, host, port):
    assert parse_listen(value) == (host, port)
    settings = _settings({"listen": value})
    assert (settings.host, settings.port) == (host, port)


@pytest.mark.parametrize(
    "value", ["localhost", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "http://x:1", "h:1/x"]
)
def test_bad_listen_addresses_name_the_key_and_the_fix(value):
    with pytest.raises(HttpSettingsError) as err:
        _settings({"listen": value})
    assert str(err.value).startswith(f"http.listen = {value!r}: ")
    assert 'e.g. listen = "127.0.0.1:9108"' in str(err.value)
    assert isinstance(err.value, ConfigError), "a config error: exit 2"


def test_unknown_keys_and_wrong_types_are_refused():
    with pytest.raises(ConfigError, match=r"http\.port: unknown key"):
        parse_config({**BASE, "http": {"port": 9108}})
    with pytest.raises(ConfigError, match=r"http\.listen = 9108: must be a string"):
        parse_config({**BASE, "http": {"listen": 9108}})
    with pytest.raises(ConfigError, match=r"http\.stall_after_s = 0\.0: must be between"):
        parse_config({**BASE, "http": {"stall_after_s": 0.0}})


def test_ipv6_listen_is_written_back_with_brackets():
    assert _settings({"listen": "[::]:9108"}).listen == "[::]:9108"
