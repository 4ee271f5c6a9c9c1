"""Golden vectors: the Python codec and the reference C encoder produce the same bytes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from firmware_config.channel_map import ChannelMap
from firmware_config.cheader import PROTOCOL_DEFINES, generate_header, parse_defines
from firmware_config.cobs import cobs_decode, cobs_encode
from firmware_config.crc import crc16
from firmware_config.decoder import FrameDecoder
from firmware_config.golden import FILES, check_golden, frame_from_entry, golden_texts
from firmware_config.protocol import (
    Frame,
    Hello,
    encode_frame,
    encode_hello,
    pack_frame,
    pack_hello,
)
from tests.support.fixtures.tools import C_SOURCE_DIR, GOLDEN_DIR, GOLDEN_ROOT

C_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Wconversion", "-Wshadow", "-Werror"]


def load(name: str) -> list[dict[str, Any]]:
    return json.loads((GOLDEN_DIR / name).read_text(encoding="utf-8"))


def test_golden_files_exist_and_are_current(six_axis_map: ChannelMap) -> None:
    assert sorted(p.name for p in GOLDEN_DIR.glob("*.json")) == sorted(FILES)
    assert check_golden(GOLDEN_DIR, six_axis_map) == [], (
        "golden vectors differ from the codec; if the change is intended run "
        "`rapp-firmware golden --out tests/golden/frames` and review the diff"
    )


def test_golden_generation_is_deterministic(six_axis_map: ChannelMap) -> None:
    assert golden_texts(six_axis_map) == golden_texts(six_axis_map)


def test_golden_vectors_cover_the_edge_cases() -> None:
    frames = load("frames.json")
    names = {entry["name"] for entry in frames}
    assert {"ends_on_full_cobs_block", "long_zero_free_run", "wraparound_and_extremes"} <= names
    assert {entry["kind"] for entry in frames} == {"data", "hello"}
    full = next(e for e in frames if e["name"] == "ends_on_full_cobs_block")
    raw = bytes.fromhex(full["raw_hex"])
    assert 0 not in raw[-254:] and raw[-255] == 0  # ends exactly on a full COBS block
    assert any(len(bytes.fromhex(e["raw_hex"])) > 2 * 254 for e in frames)


@pytest.mark.parametrize("entry", load("frames.json"), ids=lambda e: e["name"])
def test_python_codec_matches_golden(entry: dict[str, Any]) -> None:
    message = frame_from_entry(entry)
    wire = bytes.fromhex(entry["wire_hex"])
    if isinstance(message, Frame):
        assert pack_frame(message).hex() == entry["raw_hex"]
        assert encode_frame(message) == wire
    else:
        assert pack_hello(message).hex() == entry["raw_hex"]
        assert encode_hello(message) == wire
    decoder = FrameDecoder()
    decoded = decoder.feed(wire)
    assert decoded == ([message] if isinstance(message, Frame) else [])
    if isinstance(message, Hello):
        assert decoder.last_hello == message


@pytest.mark.parametrize("entry", load("cobs.json"), ids=lambda e: e["name"])
def test_cobs_matches_golden(entry: dict[str, str]) -> None:
    data = bytes.fromhex(entry["data_hex"])
    assert cobs_encode(data).hex() == entry["encoded_hex"]
    assert cobs_decode(bytes.fromhex(entry["encoded_hex"])) == data


@pytest.mark.parametrize("entry", load("crc.json"), ids=lambda e: e["name"])
def test_crc_matches_golden(entry: dict[str, Any]) -> None:
    assert crc16(bytes.fromhex(entry["data_hex"])) == entry["crc"]


# ---- C side ----------------------------------------------------------------------------


def _compile(gcc: str, tmp_path: Path, sources: list[Path], name: str) -> Path:
    binary = tmp_path / name
    result = subprocess.run(
        [
            gcc,
            *C_FLAGS,
            f"-I{C_SOURCE_DIR}",
            f"-I{tmp_path}",
            *map(str, sources),
            "-o",
            str(binary),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"gcc failed:\n{result.stderr}"
    return binary


def _driver_input() -> tuple[str, list[str]]:
    lines, expected = [], []
    for entry in load("frames.json"):
        if entry["kind"] == "data":
            samples = entry["samples"]
            values = " ".join(str(v) for row in samples for v in row)
            lines.append(
                f"D {entry['seq']} {entry['timestamp_us']} {int(entry['cycle_start'])} "
                f"{entry['cycle_start_index']} {entry['program_id']} {entry['schema_hash']} "
                f"{len(samples[0])} {len(samples)} {values}"
            )
        else:
            firmware = entry["firmware"].encode("ascii").hex() or "-"
            lines.append(
                f"H {entry['seq']} {entry['timestamp_us']} {entry['schema_hash']} "
                f"{entry['channel_count']} {entry['sample_rate_hz']} "
                f"{entry['samples_per_frame']} {firmware}"
            )
        expected.append(entry["wire_hex"])
    for entry in load("cobs.json"):
        lines.append(f"C {entry['data_hex'] or '-'}")
        expected.append(entry["encoded_hex"])
    for entry in load("crc.json"):
        lines.append(f"R {entry['data_hex'] or '-'}")
        expected.append(f"{entry['crc']:04x}")
    return "\n".join(lines) + "\n", expected


def test_c_encoder_is_byte_identical_to_python(gcc: str, tmp_path: Path) -> None:
    binary = _compile(
        gcc,
        tmp_path,
        [C_SOURCE_DIR / "rapp_frame.c", GOLDEN_ROOT / "c" / "golden_driver.c"],
        "golden_driver",
    )
    stdin, expected = _driver_input()
    result = subprocess.run(
        [str(binary)], input=stdin, capture_output=True, text=True, check=False, timeout=30
    )
    assert result.returncode == 0, result.stderr
    produced = result.stdout.splitlines()
    assert len(produced) == len(expected)
    for index, (got, want) in enumerate(zip(produced, expected, strict=True)):
        if got != want:
            at = next(
                (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), len(want)
            )
            pytest.fail(
                f"vector {index}: C output differs from Python at hex offset {at} "
                f"(C …{got[max(0, at - 8) : at + 16]}, Python …{want[max(0, at - 8) : at + 16]}; "
                f"lengths {len(got)} vs {len(want)})"
            )


def test_c_encoder_rejects_bad_input_and_small_buffers(gcc: str, tmp_path: Path) -> None:
    source = tmp_path / "limits.c"
    source.write_text(
        """
#include <stdio.h>
#include "rapp_frame.h"
int main(void) {
    int16_t s[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    uint8_t out[64];
    rapp_frame_t f = {1, 2, 1, 2, 3, 4, 6, 2, s};  /* cycle index 2 of 2 samples */
    size_t bad_index = rapp_frame_encode(&f, out, sizeof out);
    size_t ok, tight, short_by_one;
    f.cycle_start_index = 1;
    ok = rapp_frame_encode(&f, out, sizeof out);
    tight = rapp_frame_encode(&f, out, ok);
    short_by_one = rapp_frame_encode(&f, out, ok - 1);
    printf("%zu %zu %zu %zu\\n", bad_index, ok, tight, short_by_one);
    return 0;
}
""",
        encoding="utf-8",
    )
    binary = _compile(gcc, tmp_path, [C_SOURCE_DIR / "rapp_frame.c", source], "limits")
    output = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    bad_index, ok, tight, short_by_one = map(int, output.split())
    assert bad_index == 0
    assert ok == tight > 0
    assert short_by_one == 0


def test_rapp_frame_h_matches_python_constants() -> None:
    defines = parse_defines((C_SOURCE_DIR / "rapp_frame.h").read_text(encoding="utf-8"))
    assert {k: defines.get(k) for k, _ in PROTOCOL_DEFINES} == dict(PROTOCOL_DEFINES)


def test_generated_header_compiles_with_the_encoder(
    gcc: str, tmp_path: Path, six_axis_map: ChannelMap
) -> None:
    (tmp_path / "rapp_map.h").write_text(generate_header(six_axis_map), encoding="utf-8")
    main = tmp_path / "use_map.c"
    main.write_text(
        """
#include <stdio.h>
#include "rapp_frame.h"
#include "rapp_map.h"
int main(void) {
    int16_t s[RAPP_SAMPLES_PER_FRAME * RAPP_CHANNEL_COUNT] = {0};
    uint8_t out[RAPP_WIRE_FRAME_SIZE_MAX];
    rapp_frame_t f = {0, 0, 0, 0, 1, RAPP_SCHEMA_HASH, RAPP_CHANNEL_COUNT,
                      RAPP_SAMPLES_PER_FRAME, s};
    size_t n = rapp_frame_encode(&f, out, sizeof out);
    printf("%u %u %s %g %s %zu\\n", (unsigned)RAPP_SCHEMA_HASH, (unsigned)RAPP_CHANNEL_COUNT,
           RAPP_CHANNELS[RAPP_CH_J4].name, (double)RAPP_CHANNELS[RAPP_CH_J4].scale,
           RAPP_MAP_ROBOT, n);
    return 0;
}
""",
        encoding="utf-8",
    )
    binary = _compile(gcc, tmp_path, [C_SOURCE_DIR / "rapp_frame.c", main], "use_map")
    output = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    schema, channels, name, scale, robot, size = output.split()
    assert int(schema) == six_axis_map.schema_hash
    assert int(channels) == 6
    assert (name, float(scale), robot) == ("J4", 0.0001, "six_axis_arm")
    assert 0 < int(size) <= 137


def test_generated_header_content(six_axis_map: ChannelMap) -> None:
    text = generate_header(six_axis_map, source="six_axis_arm.toml")
    defines = parse_defines(text)
    assert defines["RAPP_SCHEMA_HASH"] == f"0x{six_axis_map.schema_hash:04X}u"
    assert defines["RAPP_SAMPLES_PER_FRAME"] == "10u"
    assert defines["RAPP_SAMPLE_RATE_HZ"] == "1000u"
    assert defines["RAPP_RAW_FRAME_SIZE"] == "135u"
    assert "offset 11  size 2  schema_hash" in text
    assert '{"J2", 2u, 1u, 0.001f, 0.0f, "A"},' in text
    assert text == generate_header(six_axis_map, source="six_axis_arm.toml")  # no timestamps
