"""Child processes for kill tests: ``python -m tests.support.procs <command> ...``.

Each command prints progress lines to stdout (flushed) so the parent knows what the child had
completed before it was SIGKILLed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from agent.sinks.mqtt.link import MqttLink
from agent.sinks.mqtt.payloads import AgentIdentity, build_status
from agent.sinks.mqtt.settings import MqttSettings
from agent.sinks.outbox import Outbox


def outbox_writer(db: str) -> None:
    """Put alarms forever; print each id only after put() returned."""
    box = Outbox.open(Path(db), telemetry_max_rows=50)
    i = 0
    while True:
        topic = f"rapp/v1/dev/r{i % 3}/alarm"
        msg_id = box.put(topic, b'{"n":%d}' % i, kind="alarm", qos=1)
        # telemetry in between exercises the NORMAL/FULL switching and the trimming
        box.put(f"rapp/v1/dev/r{i % 3}/score", b"{}", kind="telemetry", qos=0)
        print(msg_id, flush=True)
        i += 1


def link(db: str, host: str, port: str, device: str) -> None:
    """Run a connected MqttLink until killed."""
    box = Outbox.open(Path(db))
    ident = AgentIdentity.create(device, "0.0-test")
    settings = MqttSettings(
        host=host,
        port=int(port),
        device_id=device,
        keepalive=5,
        reconnect_min_delay=0.2,
        reconnect_max_delay=1.0,
    )
    mqtt_link = MqttLink(settings, box, lambda state: build_status(state, ident))
    mqtt_link.start()
    deadline = time.monotonic() + 20
    while not mqtt_link.connected:
        if time.monotonic() > deadline:
            print("TIMEOUT", flush=True)
            sys.exit(1)
        time.sleep(0.02)
    print("CONNECTED", flush=True)
    while True:
        time.sleep(1)


def main(argv: list[str]) -> None:
    commands = {"outbox-writer": outbox_writer, "link": link}
    commands[argv[0]](*argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
