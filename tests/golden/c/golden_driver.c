/*
 * Test driver for the reference C encoder: reads one request per line on stdin and prints
 * the encoder's output as lowercase hex, one line per request.
 *
 *   D seq ts cycle_start cycle_index program schema channels samples v0 v1 ...  -> frame
 *   H seq ts schema channels rate samples_per_frame firmware_hex|-             -> hello
 *   C data_hex|-                                                               -> cobs
 *   R data_hex|-                                                               -> crc (4 hex)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rapp_frame.h"

#define MAX_LINE 65536
#define MAX_BYTES 8192

static char line[MAX_LINE];
static uint8_t out[MAX_BYTES];
static uint8_t bytes[MAX_BYTES];
static int16_t samples[RAPP_MAX_VALUES_PER_FRAME];

static size_t parse_hex(const char *hex, uint8_t *dst, size_t cap)
{
    size_t n = 0;
    if (hex[0] == '-') {
        return 0;
    }
    while (hex[0] && hex[1] && n < cap) {
        unsigned value;
        if (sscanf(hex, "%2x", &value) != 1) {
            break;
        }
        dst[n++] = (uint8_t)value;
        hex += 2;
    }
    return n;
}

static void print_hex(const uint8_t *data, size_t len)
{
    size_t i;
    for (i = 0; i < len; ++i) {
        printf("%02x", data[i]);
    }
    printf("\n");
}

int main(void)
{
    while (fgets(line, sizeof line, stdin) != NULL) {
        char *cursor = line + 2;
        if (line[0] == 'D') {
            rapp_frame_t frame;
            unsigned long v[8];
            size_t i, values;
            int used = 0;
            if (sscanf(cursor, "%lu %lu %lu %lu %lu %lu %lu %lu%n", &v[0], &v[1], &v[2], &v[3],
                       &v[4], &v[5], &v[6], &v[7], &used) != 8) {
                return 2;
            }
            cursor += used;
            frame.seq = (uint16_t)v[0];
            frame.timestamp_us = (uint32_t)v[1];
            frame.cycle_start = (uint8_t)v[2];
            frame.cycle_start_index = (uint8_t)v[3];
            frame.program_id = (uint8_t)v[4];
            frame.schema_hash = (uint16_t)v[5];
            frame.channel_count = (uint8_t)v[6];
            frame.samples_per_frame = (uint8_t)v[7];
            values = (size_t)v[6] * v[7];
            for (i = 0; i < values; ++i) {
                long s = strtol(cursor, &cursor, 10);
                samples[i] = (int16_t)s;
            }
            frame.samples = samples;
            print_hex(out, rapp_frame_encode(&frame, out, sizeof out));
        } else if (line[0] == 'H') {
            rapp_hello_t hello;
            unsigned long v[6];
            char firmware_hex[2 * RAPP_MAX_FIRMWARE_ID + 2];
            char firmware[RAPP_MAX_FIRMWARE_ID + 1];
            size_t n;
            if (sscanf(cursor, "%lu %lu %lu %lu %lu %lu %66s", &v[0], &v[1], &v[2], &v[3], &v[4],
                       &v[5], firmware_hex) != 7) {
                return 2;
            }
            n = parse_hex(firmware_hex, (uint8_t *)firmware, RAPP_MAX_FIRMWARE_ID);
            firmware[n] = '\0';
            hello.seq = (uint16_t)v[0];
            hello.timestamp_us = (uint32_t)v[1];
            hello.schema_hash = (uint16_t)v[2];
            hello.channel_count = (uint8_t)v[3];
            hello.sample_rate_hz = (uint32_t)v[4];
            hello.samples_per_frame = (uint16_t)v[5];
            hello.firmware = firmware;
            print_hex(out, rapp_hello_encode(&hello, out, sizeof out));
        } else if (line[0] == 'C') {
            size_t n = parse_hex(strtok(cursor, " \n"), bytes, sizeof bytes);
            print_hex(out, rapp_cobs_encode(bytes, n, out, sizeof out));
        } else if (line[0] == 'R') {
            size_t n = parse_hex(strtok(cursor, " \n"), bytes, sizeof bytes);
            printf("%04x\n", rapp_crc16_update(RAPP_CRC16_INIT, bytes, n));
        } else {
            return 3;
        }
    }
    return 0;
}
