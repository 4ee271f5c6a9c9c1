"""``chaos.md``: the chaos figures as tables, and what in them needs a look (observations)."""

from __future__ import annotations

from typing import Any

from benchmarks.common import machine_lines, md_table


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Chaos: kills, full disk, hostile inputs",
        "",
        "Regenerate: `.venv/bin/python -m benchmarks.chaos"
        + (" --quick" if report["quick"] else "")
        + f"` (seed {report['seed']}, {report['elapsed_s']:.0f} s; as root: the disk-full "
        "runs mount a tmpfs). A real `rapp-agent run` (shipped default bundle, replayed "
        "recording with a dropped payload every 12 s, 2 robots at 10× speed, alarm settings "
        "that raise and clear on single windows) and a real mosquitto on loopback; every "
        "alarm counted by its id.",
        "",
        *machine_lines(report["machine"]),
        "",
    ]
    if "kills" in report:
        lines += _kills(report["kills"])
    if "disk" in report:
        lines += _disk(report["disk"])
    if "ota" in report:
        lines += _ota(report["ota"])
    elif not report["plan"]["ota"]:
        lines += ["## Hostile OTA inputs", "", "Not run with `--quick`.", ""]
    if "configs" in report:
        lines += _configs(report["configs"])
    found = observations(report)
    lines += ["## Observations", ""] + ([f"- {o}" for o in found] or ["- none"]) + [""]
    return "\n".join(lines)


def _failed(row: dict[str, Any]) -> list[str]:
    return [f"**{row['name']}: could not run** — {row['error'][:300]}", ""]


def _kills(section: dict[str, Any]) -> list[str]:
    plan = section["plan"]
    lines = [
        "## Kill rounds",
        "",
        f"A round that kills the agent lands in its start-up ({plan['startup_share']:.0%} of "
        f"them, 0.3–{plan['startup_delay_s']:g} s after the spawn) or 0–"
        f"{plan['serving_delay_s']:g} s after it logged ready; broker-only rounds are 0.3–"
        f"{plan['broker_delay_s']:g} s apart. The broker stays down 0–{plan['max_outage_s']:g} s "
        "and restarts on the same port with its persistence; the agent on the same state. "
        "*Raised* = alarm events (raise + clear) committed to the outbox (a trigger journals "
        "every committed row); *delivered* = received by a persistent QoS 1 subscriber; "
        "*stuck* = a raise neither cleared nor active in the retained `alarm/active` after a "
        "clean stop; "
        "*uncommitted at kill* = logged by the agent but not yet written when the SIGKILL "
        "landed (never durable, not counted as raised).",
        "",
    ]
    summed = ("rounds", "raised", "delivered", "lost", "duplicates", "stuck")
    total = dict.fromkeys((*summed, "uncommitted_at_kill"), 0)
    rows: list[list[Any]] = []
    for row in section["scenarios"]:
        if "error" in row:
            lines += _failed(row)
            continue
        for key in total:
            total[key] += row[key]
        rows.append(
            [
                row["scenario"],
                f"{row['rounds']} ({row['startup_kills']})",
                row["raised"],
                row["delivered"],
                row["lost"],
                row["duplicates"],
                row["stuck"],
                row["uncommitted_at_kill"],
                row["exit_code"],
                len(row["crashes"]),
            ]
        )
    rows.append(["**total**", *(f"**{total[k]}**" for k in total), "", ""])
    header = [
        "scenario",
        "rounds (in start-up)",
        "raised",
        "delivered",
        "lost",
        "duplicates",
        "stuck",
        "uncommitted at kill",
        "exit at SIGTERM",
        "crashes",
    ]
    return lines + md_table(header, rows) + [""]


def _disk(section: dict[str, Any]) -> list[str]:
    plan = section["plan"]
    lines = [
        "## Disk full",
        "",
        f"State directory on an 8 MiB tmpfs filled to the last byte while alarms are raised; "
        f"kept full ≥ {plan['full_s']:g} s and ≥ {plan['events_while_full']} events, then "
        "freed. Counted per event the agent logged (no kills here: every one must arrive). "
        "*Most copies* is the most times any one message id arrived on any topic (a "
        "re-publish loop shows here; `meta` and retained states are re-sent on reconnect).",
        "",
    ]
    rows = []
    for row in section["runs"]:
        if "error" in row:
            lines += _failed(row)
            continue
        rows.append(
            [
                row["run"],
                row["raised"],
                row["events_while_full"],
                row["delivered"],
                row["lost"],
                row["published_twice"],
                f"{row['most_copies_of_one_message']} ({row['most_copied_topic'].split('/')[-1]})",
                "yes" if row["disk_full_reported"] else "**no**",
                f"{row['refused_logged']} / {row['recovered_logged']}",
                row["tracebacks"],
                _exit(row),
            ]
        )
    header = [
        "run",
        "alarms raised",
        "while full",
        "delivered",
        "lost",
        "published twice",
        "most copies",
        "`disk_full` in status",
        "log: refuses / takes again",
        "tracebacks",
        "agent exit",
    ]
    return lines + md_table(header, rows) + [""]


def _exit(row: dict[str, Any]) -> str:
    text = f"{row['exit_code']} at SIGTERM"
    if row.get("exit_code_stopped_while_full") is not None:
        text += f" ({row['exit_code_stopped_while_full']} when stopped while full)"
    return text


def _ota(row: dict[str, Any]) -> list[str]:
    lines = [
        "## Hostile OTA inputs",
        "",
        "The trust-boundary e2e tests (`tests/e2e/test_ota_trust_boundary.py`) run as they "
        "are; each counts the hostile commands, chunks, archives and URLs it sent to a real "
        "agent, and whether any changed the serving model or stalled a signed push (> 60 s).",
        "",
    ]
    if "error" in row:
        return lines + _failed(row)
    rows = [
        [
            t["test"].removeprefix("test_").replace("_", " "),
            t["tried"],
            t["model_changed"],
            t["stalled"],
            "yes" if t["passed"] else "**no**",
            t["seconds"],
        ]
        for t in row["tests"]
    ]
    rows.append(
        [
            "**total**",
            row["tried"],
            row["model_changed"],
            row["stalled"],
            f"{row['passed']}/{len(row['tests'])}",
            row["seconds"],
        ]
    )
    header = ["test", "hostile inputs", "model changed", "stalled", "passed", "s"]
    return lines + md_table(header, rows) + [""]


def _configs(row: dict[str, Any]) -> list[str]:
    lines = ["## Broken configs", ""]
    if "error" in row:
        return lines + _failed(row)
    run = (
        f"; plain `run`: exit 2 {row['run_exit_2']}/{row['broken']}, tracebacks "
        f"{row['run_traceback']}"
        if row["run_tried"]
        else ""
    )
    lines += [
        f"{row['broken']} broken configs (the preflight tests' cases and a non-UTF-8 file): "
        f"`run --check` exit 2 {row['check_exit_2']}/{row['broken']}, with the case's message "
        f"{row['check_message']}/{row['broken']}, tracebacks {row['check_traceback']}{run}. "
        f"Control (unbroken) passes `--check`: {'yes' if row['control_passes'] else '**no**'}.",
        "",
    ]
    rows = []
    for case in row["cases"]:
        check, plain = case["check"], case.get("run")
        rows.append(
            [
                case["case"],
                check["rc"],
                _yes(check["message"]),
                _yes(check["traceback"]),
                "–" if plain is None else plain["rc"],
                "–" if plain is None else _yes(plain["traceback"]),
            ]
        )
    header = ["config", "--check exit", "message", "traceback", "run exit", "traceback"]
    return lines + md_table(header, rows) + [""]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def observations(report: dict[str, Any]) -> list[str]:
    """Every figure that is not what the acceptance criteria ask for, in words."""
    found: list[str] = []
    for row in report.get("kills", {}).get("scenarios", []):
        found += _kill_observations(row, report["seed"])
    for row in report.get("disk", {}).get("runs", []):
        found += _disk_observations(row)
    found += _ota_observations(report.get("ota"))
    found += _config_observations(report.get("configs"))
    return found


def _ota_observations(ota: dict[str, Any] | None) -> list[str]:
    if not ota or "error" in ota:
        return []
    if ota["model_changed"] or ota["stalled"] or ota["passed"] < len(ota["tests"]):
        return [
            f"OTA: model changed {ota['model_changed']}, stalled {ota['stalled']}, "
            f"passed {ota['passed']}/{len(ota['tests'])}"
        ]
    return []


def _config_observations(configs: dict[str, Any] | None) -> list[str]:
    if not configs or "error" in configs:
        return []
    modes = ("check", "run")
    bad = [
        c["case"]
        for c in configs["cases"][1:]
        if any(not c[m]["as_expected"] or c[m]["traceback"] for m in modes if m in c)
    ]
    if bad or not configs["control_passes"]:
        return [
            f"configs not refused with exit 2 (or with a traceback): {bad}; "
            f"control passes: {configs['control_passes']}"
        ]
    return []


def _kill_observations(row: dict[str, Any], seed: int) -> list[str]:
    if "error" in row:
        return []
    name, found = row["scenario"], []
    if row["lost"]:
        acked = sum(1 for x in row["lost_ids"] if x["acked_by_broker"])
        found.append(
            f"{name}: **{row['lost']} committed event(s) never delivered** ({acked} of them "
            f"acknowledged by the broker before it was killed); ids in chaos.json; reproduce "
            f"with `--only kills --seed {seed} --keep` (agent logs and outbox in the work folder)"
        )
    if row["stuck"]:
        found.append(f"{name}: **{row['stuck']} stuck alarm(s)** {row['stuck_ids']}")
    if row["logged_never_committed"]:
        found.append(
            f"{name}: events logged and never committed outside a kill window: "
            f"{row['logged_never_committed']}"
        )
    if row["unknown_ids"]:
        found.append(f"{name}: delivered ids the agent never committed: {row['unknown_ids']}")
    if row["crashes"]:
        found.append(f"{name}: the agent exited by itself {len(row['crashes'])} time(s)")
    if row["exit_code"] != 0:
        found.append(f"{name}: exit status {row['exit_code']} at SIGTERM")
    return found


def _duplicate_observations(row: dict[str, Any]) -> list[str]:
    """Alarms that arrived twice: re-sent after the broker outage (copies on both sides of it:
    in flight when the broker stopped, the at-least-once duplicate with the same id), or not."""
    name, found = row["run"], []
    outage = "broker down" in name
    across = [d for d in row["published_twice_ids"] if outage and d["before_fill"] and d["after"]]
    if across:
        found.append(
            f"disk full, {name}: {len(across)} alarm(s) arrived twice, once before the broker "
            "stopped and once after it came back: in flight when it went down, re-sent with "
            "the same id (at-least-once, not a loop)"
        )
    if len(across) < row["published_twice"]:
        found.append(
            f"disk full, {name}: **{row['published_twice'] - len(across)} alarm(s) published "
            f"twice** {[d['id'] for d in row['published_twice_ids']]}"
        )
    return found


def _disk_observations(row: dict[str, Any]) -> list[str]:
    if "error" in row:
        return []
    name, found = row["run"], []
    if row["lost"]:
        found.append(f"disk full, {name}: **{row['lost']} alarm(s) lost** {row['lost_ids']}")
    found += _duplicate_observations(row)
    if row["exit_code"] != 0 or row.get("exit_code_stopped_while_full") not in (None, 0):
        found.append(f"disk full, {name}: {_exit(row)}")
    if row["tracebacks"]:
        found.append(f"disk full, {name}: {row['tracebacks']} traceback(s) in the log")
    if not row["disk_full_reported"]:
        found.append(
            f"disk full, {name}: the disk never refused a write (SQLite reused its "
            "WAL pages), so this run did not test the full-disk path"
        )
    elif row["refused_logged"] == 0:
        found.append(
            f"disk full, {name}: status said `disk_full`, but the log never said "
            "'the disk refuses writes' (the first refused write was an ack or a "
            "retry, which note the trouble without logging it)"
        )
    if row["recovered_logged"] > 1:
        found.append(
            f"disk full, {name}: 'the disk takes writes again' logged "
            f"{row['recovered_logged'] - 1} time(s) while the disk was still full (and once after "
            f"it was freed), 'refuses writes' {row['refused_logged']} times: the outbox flips "
            "between refusing and recovered about once a second (a retry with nothing held "
            "can commit on a full disk; the next telemetry write fails again), so the log "
            "and `status.outbox.disk_full` can flap while the disk stays full"
        )
    return found
