/*
 * rapp_frame.h — reference encoder of the rapp-edge serial frame protocol (version 1).
 *
 * C99, no malloc, no global state: the firmware passes the output buffer. The byte layout is
 * defined in firmware_config/protocol.py (the single source of truth); the constants below
 * are checked against it by tests/e2e/test_golden_c.py, and `rapp-firmware header` emits the same
 * definitions (token for token) together with the channel map, so both headers may be
 * included in one translation unit.
 *
 * Wire frame = COBS(header | body | crc16_le) | 0x00, all fields little-endian.
 */
#ifndef RAPP_FRAME_H
#define RAPP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define RAPP_PROTOCOL_VERSION 1u
#define RAPP_MSG_DATA 0x01u
#define RAPP_MSG_HELLO 0x02u
#define RAPP_FRAME_DELIMITER 0x00u
#define RAPP_FLAG_CYCLE_START 0x01u
#define RAPP_CYCLE_INDEX_SHIFT 1u
#define RAPP_CYCLE_INDEX_MASK 0x7Fu
#define RAPP_HEADER_SIZE 13u
#define RAPP_CRC_SIZE 2u
#define RAPP_SAMPLE_SIZE 2u
#define RAPP_OFFSET_VERSION 0u
#define RAPP_OFFSET_MSG_TYPE 1u
#define RAPP_OFFSET_SEQ 2u
#define RAPP_OFFSET_TIMESTAMP 4u
#define RAPP_OFFSET_FLAGS 8u
#define RAPP_OFFSET_PROGRAM_ID 9u
#define RAPP_OFFSET_CHANNEL_COUNT 10u
#define RAPP_OFFSET_SCHEMA_HASH 11u
#define RAPP_HELLO_FIXED_SIZE 6u
#define RAPP_MAX_FIRMWARE_ID 32u
#define RAPP_MAX_CHANNELS 255u
#define RAPP_MAX_SAMPLES_PER_FRAME 128u
#define RAPP_MAX_VALUES_PER_FRAME 2048u
#define RAPP_CRC16_POLY 0x1021u
#define RAPP_CRC16_INIT 0xFFFFu
#define RAPP_COBS_MAX_BLOCK 0xFFu
/* Worst-case wire size (COBS overhead and delimiter included) of `raw` bytes of frame. */
#define RAPP_WIRE_SIZE_MAX(raw) ((raw) + (raw) / 254u + 2u)

/* One DATA frame. `samples` is sample-major: samples[s * channel_count + c]. */
typedef struct {
    uint16_t seq;
    uint32_t timestamp_us;
    uint8_t cycle_start;       /* non-zero: a robot cycle starts in this frame */
    uint8_t cycle_start_index; /* sample index (0..127) where it starts */
    uint8_t program_id;
    uint16_t schema_hash;
    uint8_t channel_count;
    uint8_t samples_per_frame;
    const int16_t *samples;
} rapp_frame_t;

/* Device announcement (HELLO message). */
typedef struct {
    uint16_t seq; /* sequence number of the next DATA frame */
    uint32_t timestamp_us;
    uint16_t schema_hash;
    uint8_t channel_count;
    uint32_t sample_rate_hz;
    uint16_t samples_per_frame;
    const char *firmware; /* NUL-terminated ASCII, at most RAPP_MAX_FIRMWARE_ID chars; may be NULL */
} rapp_hello_t;

/* CRC-16/CCITT-FALSE; start with crc = RAPP_CRC16_INIT. */
uint16_t rapp_crc16_update(uint16_t crc, const uint8_t *data, size_t len);

/* COBS-encode `len` bytes into `out` (no delimiter). Returns the encoded length, or 0 if
 * `out_cap` is too small. */
size_t rapp_cobs_encode(const uint8_t *data, size_t len, uint8_t *out, size_t out_cap);

/* Encode a DATA frame (COBS + delimiter) into `out`. Returns the number of bytes to send,
 * or 0 if a field is out of range or `out_cap` is too small. */
size_t rapp_frame_encode(const rapp_frame_t *frame, uint8_t *out, size_t out_cap);

/* Encode a HELLO message (COBS + delimiter) into `out`; returns bytes or 0 on error. */
size_t rapp_hello_encode(const rapp_hello_t *hello, uint8_t *out, size_t out_cap);

#endif /* RAPP_FRAME_H */
