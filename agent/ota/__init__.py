"""Over-the-air model updates on the agent.

- ``manager``    — what the daemon calls (start-up pointer, main-loop hooks); wires the rest;
- ``host``       — the narrow view of the daemon OTA works through (robots, their routes);
- ``settings``   — the ``[ota]`` table and how this device opens scorers;
- ``transfer``   — the push protocol (command, chunks, need requests) and on-disk staging;
- ``command``    — the ``ota/cmd`` message, its validation and the bytes the release key signs;
- ``authenticate`` — whether a command may be acted on: signed, unexpired, for this device;
- ``versions``   — dotted-integer versions and the forward-only rule (signed rollbacks aside);
- ``installer``  — the worker thread, driving intake → verify → activation:
- ``intake``     — commands, chunks, timeouts, need requests; ``inbox`` — the bounded hand-over
  from the MQTT thread; ``pending`` — the bounded, newest-wins queue of signed commands;
  ``fetch`` — url downloads (confined file://, bounded http(s)); ``refusals`` — counts of
  what was ignored, logged once per kind;
- ``verify``     — load, target robot, compatibility, canary; ``gate`` — recent normal windows;
- ``activation`` — model store, swap on the main loop, start of probation;
- ``probation``  — the verdict on the new model's first windows; ``probation_board`` — the
  running probations and what each verdict does;
- ``startup``    — the store's pointer applied when the robots are built;
- ``store``      — immutable bundle files + the atomic per-robot pointer;
- ``mainloop``   — calls the worker hands to the main loop;
- ``status``     — retained ``ota/status`` messages and log lines;
- ``hooks``      — seams where tests hold the worker or poison a model (no-op by default);
- ``admin``      — ``rapp-agent models`` / ``rapp-agent rollback``.
"""
