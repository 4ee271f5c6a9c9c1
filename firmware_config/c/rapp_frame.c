/*
 * rapp_frame.c — reference encoder of the rapp-edge serial frame protocol.
 *
 * The frame is COBS-encoded on the fly while it is serialized, so the firmware needs only
 * the output buffer (no second raw-frame buffer): a streaming encoder keeps the position of
 * the pending code byte and the running CRC. Byte order is written out explicitly with
 * shifts, so the code does not depend on the MCU's endianness or struct packing.
 */
#include "rapp_frame.h"

#include <string.h>

typedef struct {
    uint8_t *out;
    size_t cap;
    size_t pos;       /* next free byte */
    size_t code_pos;  /* where the pending code byte goes */
    uint8_t code;     /* 1 + data bytes in the pending block */
    uint8_t full_end; /* last block was closed by reaching 254 data bytes */
    uint8_t overflow;
    uint16_t crc;
} rapp_cobs_writer_t;

uint16_t rapp_crc16_update(uint16_t crc, const uint8_t *data, size_t len)
{
    size_t i;
    unsigned bit;
    for (i = 0; i < len; ++i) {
        crc ^= (uint16_t)((uint16_t)data[i] << 8);
        for (bit = 0; bit < 8u; ++bit) {
            if (crc & 0x8000u) {
                crc = (uint16_t)((crc << 1) ^ RAPP_CRC16_POLY);
            } else {
                crc = (uint16_t)(crc << 1);
            }
        }
    }
    return crc;
}

static void writer_init(rapp_cobs_writer_t *w, uint8_t *out, size_t cap)
{
    w->out = out;
    w->cap = cap;
    w->pos = 1; /* byte 0 is reserved for the first code byte */
    w->code_pos = 0;
    w->code = 1;
    w->full_end = 0;
    w->overflow = 0;
    w->crc = RAPP_CRC16_INIT;
}

/* Bounds are checked when a byte is stored, not when a code byte is reserved: the last
   reservation may be dropped again (see writer_close), so an exactly sized buffer works. */
static void writer_byte(rapp_cobs_writer_t *w, uint8_t byte)
{
    if (w->overflow) {
        return;
    }
    w->full_end = 0;
    if (byte != 0u) {
        if (w->pos >= w->cap) {
            w->overflow = 1;
            return;
        }
        w->out[w->pos++] = byte;
        ++w->code;
    }
    if (byte == 0u || w->code == RAPP_COBS_MAX_BLOCK) {
        if (w->code_pos >= w->cap) {
            w->overflow = 1;
            return;
        }
        w->full_end = (uint8_t)(byte != 0u);
        w->out[w->code_pos] = w->code;
        w->code = 1;
        w->code_pos = w->pos++;
    }
}

/* Feed frame bytes: they are CRC'd and COBS-encoded. */
static void writer_data(rapp_cobs_writer_t *w, const uint8_t *data, size_t len)
{
    size_t i;
    w->crc = rapp_crc16_update(w->crc, data, len);
    for (i = 0; i < len; ++i) {
        writer_byte(w, data[i]);
    }
}

/* Close the COBS encoding (no delimiter); returns the encoded length or 0. */
static size_t writer_close(rapp_cobs_writer_t *w)
{
    if (w->overflow) {
        return 0;
    }
    if (w->full_end) {
        /* data ended exactly on a full block: drop the reserved code byte, like the
           reference COBS encoder does */
        w->pos = w->code_pos;
    } else {
        if (w->code_pos >= w->cap) {
            w->overflow = 1;
            return 0;
        }
        w->out[w->code_pos] = w->code;
    }
    return w->pos;
}

/* Append the CRC (little-endian), close COBS and append the delimiter. */
static size_t writer_finish_frame(rapp_cobs_writer_t *w)
{
    uint8_t trailer[RAPP_CRC_SIZE];
    size_t len;
    trailer[0] = (uint8_t)(w->crc & 0xFFu);
    trailer[1] = (uint8_t)(w->crc >> 8);
    writer_byte(w, trailer[0]);
    writer_byte(w, trailer[1]);
    len = writer_close(w);
    if (len == 0u || len >= w->cap) {
        return 0;
    }
    w->out[len] = RAPP_FRAME_DELIMITER;
    return len + 1u;
}

size_t rapp_cobs_encode(const uint8_t *data, size_t len, uint8_t *out, size_t out_cap)
{
    rapp_cobs_writer_t w;
    size_t i;
    writer_init(&w, out, out_cap);
    for (i = 0; i < len; ++i) {
        writer_byte(&w, data[i]);
    }
    return writer_close(&w);
}

static void put_header(uint8_t header[RAPP_HEADER_SIZE], uint8_t msg_type, uint16_t seq,
                       uint32_t timestamp_us, uint8_t flags, uint8_t program_id,
                       uint8_t channel_count, uint16_t schema_hash)
{
    header[RAPP_OFFSET_VERSION] = (uint8_t)RAPP_PROTOCOL_VERSION;
    header[RAPP_OFFSET_MSG_TYPE] = msg_type;
    header[RAPP_OFFSET_SEQ] = (uint8_t)(seq & 0xFFu);
    header[RAPP_OFFSET_SEQ + 1u] = (uint8_t)(seq >> 8);
    header[RAPP_OFFSET_TIMESTAMP] = (uint8_t)(timestamp_us & 0xFFu);
    header[RAPP_OFFSET_TIMESTAMP + 1u] = (uint8_t)((timestamp_us >> 8) & 0xFFu);
    header[RAPP_OFFSET_TIMESTAMP + 2u] = (uint8_t)((timestamp_us >> 16) & 0xFFu);
    header[RAPP_OFFSET_TIMESTAMP + 3u] = (uint8_t)((timestamp_us >> 24) & 0xFFu);
    header[RAPP_OFFSET_FLAGS] = flags;
    header[RAPP_OFFSET_PROGRAM_ID] = program_id;
    header[RAPP_OFFSET_CHANNEL_COUNT] = channel_count;
    header[RAPP_OFFSET_SCHEMA_HASH] = (uint8_t)(schema_hash & 0xFFu);
    header[RAPP_OFFSET_SCHEMA_HASH + 1u] = (uint8_t)(schema_hash >> 8);
}

size_t rapp_frame_encode(const rapp_frame_t *frame, uint8_t *out, size_t out_cap)
{
    rapp_cobs_writer_t w;
    uint8_t header[RAPP_HEADER_SIZE];
    uint8_t flags = 0;
    size_t values;
    size_t i;

    if (frame == NULL || out == NULL || frame->samples == NULL) {
        return 0;
    }
    values = (size_t)frame->channel_count * frame->samples_per_frame;
    if (frame->channel_count == 0u || frame->samples_per_frame == 0u ||
        frame->samples_per_frame > RAPP_MAX_SAMPLES_PER_FRAME ||
        values > RAPP_MAX_VALUES_PER_FRAME) {
        return 0;
    }
    if (frame->cycle_start) {
        if (frame->cycle_start_index >= frame->samples_per_frame) {
            return 0;
        }
        flags = (uint8_t)(RAPP_FLAG_CYCLE_START |
                          ((unsigned)frame->cycle_start_index << RAPP_CYCLE_INDEX_SHIFT));
    }
    put_header(header, (uint8_t)RAPP_MSG_DATA, frame->seq, frame->timestamp_us, flags,
               frame->program_id, frame->channel_count, frame->schema_hash);
    writer_init(&w, out, out_cap);
    writer_data(&w, header, sizeof header);
    for (i = 0; i < values; ++i) {
        uint16_t raw = (uint16_t)frame->samples[i];
        uint8_t le[RAPP_SAMPLE_SIZE];
        le[0] = (uint8_t)(raw & 0xFFu);
        le[1] = (uint8_t)(raw >> 8);
        writer_data(&w, le, sizeof le);
    }
    return writer_finish_frame(&w);
}

size_t rapp_hello_encode(const rapp_hello_t *hello, uint8_t *out, size_t out_cap)
{
    rapp_cobs_writer_t w;
    uint8_t header[RAPP_HEADER_SIZE];
    uint8_t fixed[RAPP_HELLO_FIXED_SIZE];
    size_t firmware_len = 0;
    size_t i;

    if (hello == NULL || out == NULL) {
        return 0;
    }
    if (hello->firmware != NULL) {
        firmware_len = strlen(hello->firmware);
        if (firmware_len > RAPP_MAX_FIRMWARE_ID) {
            return 0;
        }
        for (i = 0; i < firmware_len; ++i) {
            if ((uint8_t)hello->firmware[i] > 0x7Fu) {
                return 0;
            }
        }
    }
    put_header(header, (uint8_t)RAPP_MSG_HELLO, hello->seq, hello->timestamp_us, 0u, 0u,
               hello->channel_count, hello->schema_hash);
    fixed[0] = (uint8_t)(hello->sample_rate_hz & 0xFFu);
    fixed[1] = (uint8_t)((hello->sample_rate_hz >> 8) & 0xFFu);
    fixed[2] = (uint8_t)((hello->sample_rate_hz >> 16) & 0xFFu);
    fixed[3] = (uint8_t)((hello->sample_rate_hz >> 24) & 0xFFu);
    fixed[4] = (uint8_t)(hello->samples_per_frame & 0xFFu);
    fixed[5] = (uint8_t)(hello->samples_per_frame >> 8);
    writer_init(&w, out, out_cap);
    writer_data(&w, header, sizeof header);
    writer_data(&w, fixed, sizeof fixed);
    writer_data(&w, (const uint8_t *)hello->firmware, firmware_len);
    return writer_finish_frame(&w);
}
