"""firmware_config: the serial wire protocol and channel maps shared with the acquisition board.

One versioned source of truth for both ends: channel maps (``channel_map``), the frame codec
(``protocol``, ``cobs``, ``crc``) and streaming decoder (``decoder``), the C header generator
(``cheader``) and reference C encoder (``c/``), golden vectors (``golden``), a simulated arm
(``simulator``) and a firmware emulator (``emulator``).

This package never imports ``agent`` or ``exporter``; they import it.
"""
