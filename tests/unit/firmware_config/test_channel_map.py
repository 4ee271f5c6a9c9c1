"""Channel map parsing, validation messages, schema hash and unit conversion."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from firmware_config.channel_map import (
    ChannelMap,
    ChannelMapError,
    builtin_map_path,
    load_builtin_map,
    load_channel_map,
    parse_channel_map,
)
from firmware_config.crc import crc16


def base_document() -> dict[str, Any]:
    return copy.deepcopy(tomllib.loads(builtin_map_path().read_text(encoding="utf-8")))


def test_builtin_map_is_the_six_axis_arm(six_axis_map: ChannelMap) -> None:
    m = six_axis_map
    assert m.format_version == 1
    assert m.robot == "six_axis_arm"
    assert m.names == ("J1", "J2", "J3", "J4", "J5", "J6")
    assert [c.axis for c in m.channels] == [1, 2, 3, 4, 5, 6]
    assert {c.unit for c in m.channels} == {"A"}
    assert m.sample_rate_hz == 1000
    assert m.samples_per_frame == 10


def test_scales_fit_realistic_currents_in_int16(six_axis_map: ChannelMap) -> None:
    full_scale = six_axis_map.scales * 32767
    assert (full_scale[:3] >= 20).all()  # base, shoulder, elbow: ±20 A and more
    assert (full_scale[3:] >= 2).all()  # wrists: ±2 A and more
    assert (six_axis_map.scales[3:] <= 0.0002).all()  # wrists keep sub-mA resolution


def test_schema_hash_is_crc16_of_canonical_json(six_axis_map: ChannelMap) -> None:
    canonical = six_axis_map.canonical_json()
    assert six_axis_map.schema_hash == crc16(canonical.encode("ascii"))
    assert " " not in canonical
    assert '"scale":0.001' in canonical
    assert "description" not in canonical


def test_schema_hash_ignores_cosmetics_but_not_content() -> None:
    doc = base_document()
    reference = ChannelMap.from_mapping(doc).schema_hash
    doc["description"] = "something else"
    doc["channels"][0]["scale"] = 1e-3  # same float, other spelling
    doc["channels"][0]["offset"] = 0  # int vs float
    assert ChannelMap.from_mapping(doc).schema_hash == reference
    for key, value in [("scale", 0.002), ("offset", 0.5), ("name", "JX"), ("unit", "mA")]:
        changed = base_document()
        changed["channels"][0][key] = value
        assert ChannelMap.from_mapping(changed).schema_hash != reference, key
    swapped = base_document()
    swapped["channels"][0], swapped["channels"][1] = swapped["channels"][1], swapped["channels"][0]
    assert ChannelMap.from_mapping(swapped).schema_hash != reference


def test_offset_defaults_to_zero() -> None:
    doc = base_document()
    del doc["channels"][0]["offset"]
    assert ChannelMap.from_mapping(doc).channels[0].offset == 0.0


def test_physical_conversion_round_trip(six_axis_map: ChannelMap) -> None:
    raw = np.array([[1000, -20000, 32767, 5000, -32768, 0]], dtype=np.int16)
    amps = six_axis_map.to_physical(raw)
    assert amps.dtype == np.float32
    np.testing.assert_allclose(amps[0], [1.0, -20.0, 32.767, 0.5, -3.2768, 0.0], rtol=1e-6)
    assert (six_axis_map.to_raw(amps) == raw).all()


def test_to_raw_saturates_like_an_adc(six_axis_map: ChannelMap) -> None:
    raw = six_axis_map.to_raw(np.array([[100.0, -100.0, np.nan, 3.3, -3.3, 1e9]]))
    assert raw.tolist() == [[32767, -32768, 0, 32767, -32768, 32767]]


def test_conversion_checks_the_channel_count(six_axis_map: ChannelMap) -> None:
    with pytest.raises(ChannelMapError, match="does not end in 6 channels"):
        six_axis_map.to_physical(np.zeros((3, 5), dtype=np.int16))


def test_index_lookup(six_axis_map: ChannelMap) -> None:
    assert six_axis_map.index_of("J3") == 2
    assert six_axis_map.index_of_axis(5) == 4
    with pytest.raises(ChannelMapError, match="no channel named 'J9'; the map has J1"):
        six_axis_map.index_of("J9")


def _set(path: str, value: Any) -> dict[str, Any]:
    doc = base_document()
    target: Any = doc
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    target[int(last) if last.isdigit() else last] = value
    return doc


def _delete(path: str) -> dict[str, Any]:
    doc = base_document()
    if path.startswith("channels."):
        del doc["channels"][int(path.split(".")[1])][path.split(".")[2]]
    else:
        del doc[path]
    return doc


INVALID = [
    (_set("channels.2.scale", 0), "channels[2].scale = 0: must be > 0 (amps per LSB, e.g. 0.001)"),
    (_set("channels.2.scale", -0.5), "channels[2].scale = -0.5: must be > 0"),
    (_set("channels.1.scale", "0.001"), "channels[1].scale = '0.001': must be a number"),
    (_set("channels.1.scale", float("inf")), "channels[1].scale = inf: must be a finite number"),
    (
        _set("channels.0.scal", 0.1),
        "channels[0].scal: unknown key (did you mean 'scale'?); "
        "allowed keys: adc_channel, axis, name, offset, scale, unit",
    ),
    (
        _set("samplerate", 10),
        "samplerate: unknown key (did you mean 'sample_rate_hz'?); "
        "allowed keys: channels, description, format_version, robot, sample_rate_hz, "
        "samples_per_frame",
    ),
    (
        _set("format_version", 2),
        "format_version = 2: unsupported; this rapp-edge reads format_version = 1",
    ),
    (_set("robot", "six axis"), "robot = 'six axis': invalid; use letters, digits"),
    (_set("sample_rate_hz", 1000.5), "sample_rate_hz = 1000.5: must be an integer (samples"),
    (_set("sample_rate_hz", 0), "sample_rate_hz = 0: must be between 1 and 1000000"),
    (_set("samples_per_frame", 129), "samples_per_frame = 129: must be between 1 and 128"),
    (_set("samples_per_frame", True), "samples_per_frame = True: must be an integer"),
    (_set("channels", []), "channels = []: must be a non-empty list of [[channels]] tables"),
    (
        _set("channels.3.name", "J2"),
        "channels[3].name = 'J2': duplicate of channels[1].name; every channel needs its own name",
    ),
    (
        _set("channels.4.adc_channel", 0),
        "channels[4].adc_channel = 0: duplicate of channels[0].adc_channel",
    ),
    (_set("channels.0.name", "1J"), "channels[0].name = '1J': invalid; use a C identifier"),
    (_set("channels.0.axis", 0), "channels[0].axis = 0: must be between 1 and 255"),
    (_set("channels.0.adc_channel", 256), "channels[0].adc_channel = 256: must be between 0"),
    (_set("channels.0.unit", ""), "channels[0].unit = '': invalid; use 1–16 printable"),
    (_set("channels.0", 5), "channels[0] = 5: must be a table; write it as a [[channels]]"),
    (_delete("robot"), 'robot: missing; add robot = "six_axis_arm"'),
    (_delete("channels.2.scale"), "channels[2].scale: missing; add scale = 0.001 (amps per LSB)"),
    (_set("description", 5), "description = 5: must be a string"),
]


@pytest.mark.parametrize(("document", "message"), INVALID)
def test_validation_errors_name_key_value_and_fix(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ChannelMapError) as info:
        ChannelMap.from_mapping(document)
    assert str(info.value).startswith(message)


def test_too_many_values_per_frame_suggests_a_limit() -> None:
    doc = base_document()
    doc["channels"] = [
        {"name": f"C{i}", "axis": 1, "adc_channel": i, "scale": 0.001, "unit": "A"}
        for i in range(20)
    ]
    doc["samples_per_frame"] = 128
    with pytest.raises(ChannelMapError, match=r"20 channels × 128 samples = 2560 .* at most 102"):
        ChannelMap.from_mapping(doc)


def test_file_errors_start_with_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("format_version = 1\nrobot = \n", encoding="utf-8")
    with pytest.raises(ChannelMapError, match=rf"^{bad}: not valid TOML"):
        load_channel_map(bad)
    with pytest.raises(ChannelMapError, match=rf"^{tmp_path / 'missing.toml'}: cannot read"):
        load_channel_map(tmp_path / "missing.toml")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(builtin_map_path().read_text().replace("scale = 0.001", "scale = 0", 1))
    with pytest.raises(ChannelMapError, match=rf"^{wrong}: channels\[0\].scale = 0: must be > 0"):
        load_channel_map(wrong)


def test_parse_from_text_and_unknown_builtin() -> None:
    text = builtin_map_path().read_text(encoding="utf-8")
    assert parse_channel_map(text) == load_builtin_map()
    with pytest.raises(ChannelMapError, match="no built-in channel map 'nope'"):
        load_builtin_map("nope")
