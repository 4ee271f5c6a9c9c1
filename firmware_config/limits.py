"""Size limits shared by the channel map, the codec and the C header.

They live in one place so that a channel map that validates always produces frames that the
decoder accepts and that fit the firmware's statically sized buffers.
"""

from __future__ import annotations

MAX_CHANNELS = 255  # channel count is a u8 in the frame header
MAX_SAMPLES_PER_FRAME = 128  # the cycle-start sample index has 7 bits in the flags byte
MAX_VALUES_PER_FRAME = 2048  # channels × samples; bounds a frame to ~4 KiB of body
MAX_SAMPLE_RATE_HZ = 1_000_000
