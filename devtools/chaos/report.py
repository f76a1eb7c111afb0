"""The run's table and its last line of JSON."""

import json

TANSU_SKIPS = {
    "fenced leader's records invisible to read_committed": (
        "Tansu does not hide aborted transactions from read_committed readers; "
        "mark_is_a_committed_record is weaker there for the same reason"
    ),
    "topic history before the last wipe": (
        "Tansu is memory only: a restart empties it; the topic checks cover the "
        "events created since the replay point"
    ),
}


def table(*, config, faults, load, ev, invariants, drain_s, restarts, errors, say):
    say("")
    say(
        f"Chaos run: seed {config.seed}, {config.duration:g} s of load, broker "
        f"{config.broker}, PostgreSQL database {config.database_name}; "
        f"{config.relays} relays --shards {config.shards}, {config.consumers} consumers, "
        "send_emails, gunicorn (deploy/gunicorn.conf.py)"
    )
    say(f"  {'fault':<28} {'n':>4}")
    say(f"  {'-' * 28} {'-' * 4}")
    for kind, n in sorted(faults.items()):
        say(f"  {kind:<28} {n:>4}")
    say(f"  {'total':<28} {sum(faults.values()):>4}  ({len(faults)} kinds)")
    outcomes = load.counts()
    statuses = ", ".join(
        f"{s or 'none'}: {n}" for s, n in sorted(load.statuses.items())
    )
    say(
        f"  changes sent {sum(outcomes.values())}: 2xx {outcomes['ok']}, 4xx "
        f"{outcomes['rejected']}, answer lost {outcomes['unknown']} (of which "
        f"{ev.unknown_committed} committed); HTTP statuses {statuses}"
    )
    say(
        f"  committed changes {ev.committed_changes}, outbox events {len(ev.events)}, "
        f"topic records read {len(ev.records)}, drain {drain_s:.1f} s"
    )
    say(f"  restarts by the supervisor: {dict(sorted(restarts.items())) or 'none'}")
    say(
        f"  email: sink got {sum(ev.received.values())} messages, duplicates {ev.duplicates}"
    )
    say("")
    say(f"  {'invariant':<40} {'expected':>9} {'found':>9}  ok")
    say(f"  {'-' * 40} {'-' * 9} {'-' * 9}  --")
    for inv in invariants:
        mark = "yes" if inv.ok else "NO"
        say(f"  {inv.name:<40} {inv.expected:>9} {inv.found:>9}  {mark}")
        if inv.note:
            say(f"      ({inv.note})")
        if not inv.ok:
            say(f"      first offenders: {', '.join(inv.offenders) or '-'}")
    for error in errors:
        say(f"  FAULT FAILED: {error}")
    if config.broker == "tansu":
        say("  skipped on Tansu:")
        for check, why in TANSU_SKIPS.items():
            say(f"    {check}: {why}")


def summary(*, faults, ev, invariants, drain_s, errors) -> dict:
    """The last line, shaped as issue 11 asks (fault errors fail it; the table names them)."""
    return {
        "ok": all(i.ok for i in invariants) and not errors,
        "faults": dict(sorted(faults.items())),
        "changes": ev.committed_changes,
        "events": len(ev.events),
        "drain_s": round(drain_s, 1),
        "invariants": {
            i.name: {"expected": i.expected, "found": i.found, "ok": i.ok}
            for i in invariants
        },
    }


def json_line(result: dict) -> str:
    return json.dumps(result, default=str)
