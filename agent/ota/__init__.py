"""Over-the-air model updates on the agent (SPEC §9).

- ``transfer``  — the push protocol (command, chunks, need requests) and on-disk staging;
- ``installer`` — the worker thread: download, verify, gate, stage, swap;
- ``probation`` — the verdict on the new model's first windows;
- ``store``     — immutable bundle files + the atomic per-robot pointer;
- ``manager``   — what the daemon calls (start-up pointer, main-loop hooks);
- ``status``    — retained ``ota/status`` messages and log lines;
- ``admin``     — ``rapp-agent models`` / ``rapp-agent rollback``;
- ``failpoints``— test-only fault injection (off unless ``RAPP_OTA_FAILPOINTS`` is set).
"""
