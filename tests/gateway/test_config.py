from __future__ import annotations

import pytest

from gateway.config import (
    AnalysisSettings, HTTPSettings, LoggingSettings, MLLPSettings, Settings, StorageSettings,
    load_settings,
)
from gateway.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return str(path)


def test_embedded_defaults_without_a_file():
    settings = load_settings(None, {}, {})
    assert settings.mllp == MLLPSettings()
    assert settings.mllp.endpoint == "tcp:2575:interface=127.0.0.1"
    assert settings.http.endpoint == "tcp:8080:interface=127.0.0.1"
    assert settings.storage.db == "./var/ri-gateway.sqlite3"
    assert (settings.analysis, settings.logging) == (AnalysisSettings(), LoggingSettings())


def test_documented_file_equals_the_embedded_defaults():
    from pathlib import Path

    path = Path(__file__).parents[2] / "config" / "gateway.toml"
    settings = load_settings(str(path), {}, {})
    defaults = load_settings(None, {}, {})
    assert (settings.mllp, settings.storage, settings.analysis, settings.http, settings.logging) == (
        defaults.mllp, defaults.storage, defaults.analysis, defaults.http, defaults.logging)


def test_documented_file_mentions_every_key():
    from dataclasses import fields
    from pathlib import Path

    text = (Path(__file__).parents[2] / "config" / "gateway.toml").read_text()
    for section, cls in [("mllp", MLLPSettings), ("storage", StorageSettings),
                         ("analysis", AnalysisSettings), ("http", HTTPSettings),
                         ("logging", LoggingSettings)]:
        assert f"[{section}]" in text
        for f in fields(cls):
            assert f"\n{f.name} = " in text, f"{section}.{f.name} undocumented"


def test_file_then_environment_then_cli(tmp_path):
    path = write(tmp_path, '[mllp]\nendpoint = "tcp:3000"\nmax_connections = 5\n'
                           '[storage]\ndb = "/tmp/a.sqlite3"\n')
    env = {"RI_GATEWAY_MLLP_ENDPOINT": "tcp:3001", "RI_GATEWAY_MLLP_LENIENT_END": "true",
           "RI_GATEWAY_MLLP_ACCEPTED_MESSAGE_TYPES": "ORU^R01, ORU^R30",
           "RI_GATEWAY_API_KEYS": "k1,k2", "UNRELATED": "x"}
    settings = load_settings(path, {"mllp.endpoint": "tcp:3002", "storage.db": None}, env)
    assert settings.mllp == MLLPSettings(
        endpoint="tcp:3002", max_connections=5, lenient_end=True,
        accepted_message_types=("ORU^R01", "ORU^R30"))
    assert settings.storage.db == "/tmp/a.sqlite3"
    assert settings.http.api_keys == ("k1", "k2")


@pytest.mark.parametrize("text, env, key", [
    ("[mllp]\nmax_frame_size = -1\n", {}, "mllp.max_frame_size"),
    ("[mllp]\nmax_frame_size = \"big\"\n", {}, "mllp.max_frame_size"),
    ("[mllp]\nendpoint = \"tpc:2575\"\n", {}, "mllp.endpoint"),
    ("[mllp]\ndefault_charset = \"klingon\"\n", {}, "mllp.default_charset"),
    ("[mllp]\naccepted_versions = []\n", {}, "mllp.accepted_versions"),
    ("[mllp]\nlenient_end = \"maybe\"\n", {}, "mllp.lenient_end"),
    ("[mllp]\nno_such_key = 1\n", {}, "mllp.no_such_key"),
    ("[nonsense]\nx = 1\n", {}, "nonsense"),
    ("[analysis]\nack_after = \"never\"\n", {}, "analysis.ack_after"),
    ("[analysis]\nstop_grace = -1\n", {}, "analysis.stop_grace"),
    ("[analysis]\nstop_grace = \"long\"\n", {}, "analysis.stop_grace"),
    ("", {"RI_GATEWAY_ANALYSIS_STOP_GRACE": "5s"}, "analysis.stop_grace"),
    ("", {"RI_GATEWAY_ANALYSIS_WORKERS": "many"}, "analysis.workers"),
    ("", {"RI_GATEWAY_STORAGE_SYNCHRONOUS": "off"}, "storage.synchronous"),
    ("", {"RI_GATEWAY_NOPE_X": "1"}, "RI_GATEWAY_NOPE_X"),
    ("[http]\nendpoint = \"tcp:2575:interface=127.0.0.1\"\n", {}, "http.endpoint"),
    # Python codecs that are not character sets HL7 text can be written in.
    ("[mllp]\ndefault_charset = \"hex\"\n", {}, "mllp.default_charset"),
    ("", {"RI_GATEWAY_MLLP_DEFAULT_CHARSET": "idna"}, "mllp.default_charset"),
    ("", {"RI_GATEWAY_MLLP_DEFAULT_CHARSET": "undefined"}, "mllp.default_charset"),
    # Ports Twisted parses but bind() refuses.
    ("[mllp]\nendpoint = \"tcp:99999\"\n", {}, "mllp.endpoint"),
    ("", {"RI_GATEWAY_MLLP_ENDPOINT": "tcp:port=65536:interface=127.0.0.1"}, "mllp.endpoint"),
    ("", {"RI_GATEWAY_MLLP_ENDPOINT": "tcp:-1"}, "mllp.endpoint"),
    ("", {"RI_GATEWAY_MLLP_ENDPOINT": "tcp6:70000"}, "mllp.endpoint"),
    ("[http]\nendpoint = \"tcp:70000:interface=127.0.0.1\"\n", {}, "http.endpoint"),
    # [mappings] keys are named once.
    ("[mappings]\nfoo = 1\n", {}, "mappings.foo"),
    ("[mappings]\nvalidation = \"bogus\"\n", {}, "mappings.validation"),
    ("", {"RI_GATEWAY_MAPPINGS_DEFAULT_CHARSET": "hex"}, "mappings.default_charset"),
])
def test_invalid_values_name_the_key(tmp_path, text, env, key):
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), {}, env)
    assert info.value.key == key
    assert str(info.value).startswith(key + ": ")


FLOAT_KEYS = [("mllp", "idle_timeout"), ("analysis", "quiet_period"), ("analysis", "max_wait"),
              ("analysis", "timeout"), ("analysis", "stop_grace")]


def test_float_keys_are_all_checked_here():
    # A float setting added later must join FLOAT_KEYS, so the test below covers it.
    import typing

    from gateway.config import BUILTIN_SECTIONS

    assert sorted((name, key) for name, cls in BUILTIN_SECTIONS.items()
                  for key, tp in typing.get_type_hints(cls).items()
                  if tp in (float, float | None)) == sorted(FLOAT_KEYS)


@pytest.mark.parametrize("section, key", FLOAT_KEYS)
@pytest.mark.parametrize("toml, env", [
    ("nan", "nan"), ("inf", "inf"), ("-inf", "-inf"), ("+nan", "NaN"), ("1e999", "1e999"),
])
def test_float_settings_reject_nan_and_infinity(tmp_path, section, key, toml, env):
    # NaN passes every comparison a validator makes (nan <= 0 is false); the listener
    # would then refuse idle_timeout = nan after start.
    dotted = f"{section}.{key}"
    for path, environ in [(write(tmp_path, f"[{section}]\n{key} = {toml}\n"), {}),
                          (None, {f"RI_GATEWAY_{section}_{key}".upper(): env})]:
        with pytest.raises(ConfigError) as info:
            load_settings(path, {}, environ)
        assert info.value.key == dotted
        assert str(info.value).startswith(f"{dotted}: must be a finite number")
    assert getattr(getattr(load_settings(None, {dotted: 0.5}, {}), section), key) == 0.5


@pytest.mark.parametrize("endpoint", ["tcp:0:interface=127.0.0.1", "tcp:65535:interface=127.0.0.1",
                                      "tcp:port=25000:interface=127.0.0.1", "unix:/tmp/ri-gateway.sock"])
def test_ports_in_range_and_other_endpoint_kinds_are_accepted(endpoint):
    assert load_settings(None, {"mllp.endpoint": endpoint}, {}).mllp.endpoint == endpoint


@pytest.mark.parametrize("port, refused", [(70000, True), (2576, False)])
def test_tls_endpoint_port_is_checked_too(port, refused):
    # Twisted's own test key and certificate: the endpoint only loads them, it never listens.
    from pathlib import Path

    import twisted.test

    pem = Path(twisted.test.__file__).parent / "server.pem"
    endpoint = f"ssl:{port}:privateKey={pem}:interface=127.0.0.1"
    if refused:
        with pytest.raises(ConfigError, match=f"port {port} is not in 0-65535") as info:
            load_settings(None, {"http.endpoint": endpoint}, {})
        assert info.value.key == "http.endpoint"
    else:
        assert load_settings(None, {"http.endpoint": endpoint}, {}).http.endpoint == endpoint


@pytest.mark.parametrize("value, codec", [("8859/1", "latin-1"), ("UNICODE UTF-8", "utf-8"),
                                          ("cp1252", "cp1252"), ("utf-8-sig", "utf-8")])
def test_default_charset_takes_what_decoding_takes(value, codec):
    # HL7 names too: the receiver decodes with mappings.decoding, which reads them.
    import codecs

    from mappings.decoding import charset_codec

    settings = load_settings(None, {"mllp.default_charset": value}, {})
    assert codecs.lookup(charset_codec(settings.mllp.default_charset)).name == codecs.lookup(codec).name


def test_cli_override_is_validated():
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"mllp.endpoint": "bogus:1"}, {})
    assert info.value.key == "mllp.endpoint"


def test_unreadable_and_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(str(tmp_path / "missing.toml"), {}, {})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[mllp\n"), {}, {})


def test_settings_are_frozen():
    settings = load_settings(None, {}, {})
    with pytest.raises(AttributeError):
        settings.mllp.endpoint = "tcp:1"  # type: ignore[misc]
    assert isinstance(settings, Settings)


def test_registered_section(tmp_path, monkeypatch):
    from gateway import config

    seen = []

    def parse(table):
        seen.append(dict(table))
        if "limit" in table and not isinstance(table["limit"], int):
            raise ConfigError("extra.limit", "expected an integer")
        return dict(table)

    monkeypatch.setitem(config._REGISTERED, "extra", parse)
    settings = load_settings(write(tmp_path, "[extra]\nname = \"a\"\n"), {},
                             {"RI_GATEWAY_EXTRA_LIMIT": "3"})
    assert settings.section("extra") == {"name": "a", "limit": 3}
    with pytest.raises(ConfigError) as info:
        load_settings(None, {}, {"RI_GATEWAY_EXTRA_LIMIT": "x"})
    assert info.value.key == "extra.limit"


def test_outbound_keys_from_the_environment_are_read_as_their_type():
    # A value that parses as TOML was read as one: "2.6" became the number 2.6, and every
    # version without a second dot stopped the gateway ("outbound.version: must be a string").
    settings = load_settings(None, {}, {"RI_GATEWAY_OUTBOUND_VERSION": "2.6",
                                        "RI_GATEWAY_OUTBOUND_SENDING_FACILITY": "1234",
                                        "RI_GATEWAY_OUTBOUND_EVIDENCE": "no"})
    fmt, _ = settings.section("outbound")
    assert (fmt.version, fmt.sending_facility, fmt.evidence) == ("2.6", "1234", False)


@pytest.mark.parametrize(("value", "expected"), [
    ("check", "check"), ("full", "full"), ("NONE", "none"), (True, "full"), (False, "none"),
])
def test_map_before_ack_modes_and_the_earlier_boolean_form(value, expected):
    assert load_settings(None, {"mllp.map_before_ack": value}, {}).mllp.map_before_ack == expected
    env = {"RI_GATEWAY_MLLP_MAP_BEFORE_ACK": str(value).lower()}
    assert load_settings(None, {}, env).mllp.map_before_ack == expected
    if not isinstance(value, str):  # from code: the booleans are read the same way
        assert MLLPSettings(map_before_ack=value).map_before_ack == expected


def test_map_before_ack_defaults_to_the_check_and_rejects_other_values():
    assert load_settings(None, {}, {}).mllp.map_before_ack == "check"
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"mllp.map_before_ack": "sometimes"}, {})
    assert info.value.key == "mllp.map_before_ack"
