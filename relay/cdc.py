"""Change data capture: Debezium's outbox event router on the outbox table.

The connector reads the table's inserts from a PostgreSQL publication through a
logical replication slot (``pgoutput``) and writes the records run_relay would
write: topic from the row's ``topic``, key from ``key``, value from ``payload``,
the CloudEvents headers from their columns and two constants.
"""

import json
import re
import urllib.error
import urllib.request

from django.conf import settings
from django.core.management.base import CommandError
from django.db import connection

from relay.events import CONTENT_TYPE
from relay.models import OutboxEvent

# Columns placed as headers, and the header each becomes.
HEADER_COLUMNS = (
    ("id", "ce_id"),
    ("type", "ce_type"),
    ("ce_specversion", "ce_specversion"),
    ("ce_source", "ce_source"),
    ("ce_time", "ce_time"),
    ("ce_subject", "ce_subject"),
    ("traceparent", "traceparent"),
)
STRING = "org.apache.kafka.connect.storage.StringConverter"
INSERT_HEADER = "org.apache.kafka.connect.transforms.InsertHeader"
PASSWORD_VARIABLE = "CDC_DATABASE_PASSWORD"


class CDCError(RuntimeError):
    """CDC cannot work here (no PostgreSQL, wal_level, a busy slot, ...)."""


def cdc_enabled() -> bool:
    return settings.OUTBOX_RELAY == "cdc"


def refuse_poll_relay() -> None:
    """Stop run_relay in cdc mode: two relays would publish every event twice."""
    if cdc_enabled():
        raise CommandError(
            "OUTBOX_RELAY=cdc: Debezium publishes the outbox, so run_relay must not "
            "run. Switch back with `manage.py outbox_cdc handover-to-poll` and "
            "OUTBOX_RELAY=poll (see README, Change data capture)."
        )


def slot_name() -> str:
    """The replication slot: per cluster, so named after the database by default."""
    if settings.CDC["SLOT_NAME"]:
        return settings.CDC["SLOT_NAME"]
    name = re.sub(r"[^a-z0-9_]", "_", str(connection.settings_dict["NAME"]).lower())
    return f"healthcare_outbox_{name}"[:63]


def outbox_table() -> str:
    return OutboxEvent._meta.db_table


def connector_config() -> dict:
    """The connector's configuration for Connect's REST API (PUT .../config)."""
    db, cdc = connection.settings_dict, settings.CDC
    placement = ",".join(f"{c}:header:{h}" for c, h in HEADER_COLUMNS)
    config = {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1",
        "plugin.name": "pgoutput",
        "database.hostname": cdc["DATABASE_HOST"] or db.get("HOST") or "127.0.0.1",
        "database.port": str(cdc["DATABASE_PORT"] or db.get("PORT") or 5432),
        "database.user": db.get("USER") or "postgres",
        "database.password": f"${{env:{PASSWORD_VARIABLE}}}"
        if db.get("PASSWORD")
        else "",
        "database.dbname": db["NAME"],
        "topic.prefix": cdc["TOPIC_PREFIX"],
        "slot.name": slot_name(),
        "publication.name": cdc["PUBLICATION"],
        "publication.autocreate.mode": "disabled",
        "snapshot.mode": "no_data",
        "table.include.list": f"public.{outbox_table()}",
        "tombstones.on.delete": "false",
        # no __debezium.context.* headers: the record carries what run_relay's does
        "extended.headers.enabled": "false",
        # heartbeats move the slot on while other tables write WAL and the outbox not
        "heartbeat.interval.ms": str(cdc["HEARTBEAT_MS"]),
        "poll.interval.ms": str(cdc["POLL_INTERVAL_MS"]),
        # topics Connect may create (the heartbeat topic; the app creates its own)
        "topic.creation.default.partitions": "1",
        "topic.creation.default.replication.factor": "-1",
        "key.converter": STRING,
        "value.converter": STRING,
        "header.converter": "org.apache.kafka.connect.storage.SimpleHeaderConverter",
        "transforms": "outbox,dropid,contenttype",
        "transforms.outbox.type": "io.debezium.transforms.outbox.EventRouter",
        "transforms.outbox.table.field.event.id": "id",
        "transforms.outbox.table.field.event.key": "key",
        "transforms.outbox.table.field.event.payload": "payload",
        "transforms.outbox.route.by.field": "topic",
        "transforms.outbox.route.topic.replacement": "${routedByValue}",
        "transforms.outbox.table.fields.additional.placement": placement,
        # the router adds the event id as header "id"; ce_id already carries it
        "transforms.dropid.type": "org.apache.kafka.connect.transforms.DropHeaders",
        "transforms.dropid.headers": "id",
        "transforms.contenttype.type": INSERT_HEADER,
        "transforms.contenttype.header": "content-type",
        "transforms.contenttype.value.literal": CONTENT_TYPE,
    }
    return config


def require_logical_wal() -> None:
    """Raise CDCError naming what is missing for CDC on this database."""
    if connection.vendor != "postgresql":
        raise CDCError(
            f"CDC needs PostgreSQL; DATABASE_URL points at {connection.vendor}."
        )
    with connection.cursor() as cursor:
        cursor.execute("SHOW wal_level")
        (level,) = cursor.fetchone()
    if level != "logical":
        raise CDCError(
            f"CDC needs wal_level=logical on PostgreSQL (it is {level}): set it in "
            "postgresql.conf or with `ALTER SYSTEM SET wal_level = logical`, restart."
        )


def cdc_setup() -> dict:
    """Create the publication (inserts only) and the slot, unless they exist."""
    require_logical_wal()
    publication, slot = settings.CDC["PUBLICATION"], slot_name()
    created = {"publication": False, "slot": False}
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [publication])
        if cursor.fetchone() is None:
            # Inserts only: marks, replays and retention deletes are not events.
            cursor.execute(
                f'CREATE PUBLICATION "{publication}" FOR TABLE "{outbox_table()}" '
                "WITH (publish = 'insert')"
            )
            created["publication"] = True
        if slot_status() is None:
            cursor.execute(
                "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [slot]
            )
            created["slot"] = True
    return created


def cdc_teardown() -> dict:
    """Drop the slot and the publication (the connector must be stopped first)."""
    require_logical_wal()
    status = slot_status()
    dropped = {"slot": False, "publication": False}
    with connection.cursor() as cursor:
        if status is not None:
            if status["active"]:
                raise CDCError(
                    f"slot {status['slot']} is in use (pid {status['active_pid']}): "
                    "stop the connector first"
                )
            cursor.execute("SELECT pg_drop_replication_slot(%s)", [status["slot"]])
            dropped["slot"] = True
        cursor.execute(
            "SELECT 1 FROM pg_publication WHERE pubname = %s",
            [settings.CDC["PUBLICATION"]],
        )
        if cursor.fetchone() is not None:
            cursor.execute(f'DROP PUBLICATION "{settings.CDC["PUBLICATION"]}"')
            dropped["publication"] = True
    return dropped


def slot_status() -> dict | None:
    """The slot's activity and WAL figures, or None when it does not exist."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT slot_name, active, active_pid, restart_lsn::text,
                   confirmed_flush_lsn::text,
                   pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,
                   pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint
            FROM pg_replication_slots WHERE slot_name = %s
            """,
            [slot_name()],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    keys = ("slot", "active", "active_pid", "restart_lsn", "confirmed_flush_lsn")
    status = dict(zip(keys, row[:5], strict=True))
    status["retained_bytes"], status["lag_bytes"] = row[5], row[6]
    return status


def slot_lag_bytes() -> int | None:
    """WAL the slot keeps for the connector (bytes), None without a slot."""
    status = slot_status()
    return None if status is None else status["retained_bytes"]


def cdc_health() -> dict:
    """For /readyz and the pipeline page: the mode and, in cdc mode, the slot."""
    if not cdc_enabled():
        return {"ok": True, "mode": "poll"}
    limit = settings.CDC["MAX_SLOT_LAG_BYTES"]
    status = slot_status()
    if status is None:
        return {
            "ok": False,
            "mode": "cdc",
            "error": f"no replication slot {slot_name()}",
        }
    ok = status["retained_bytes"] <= limit
    return {
        "ok": ok,
        "mode": "cdc",
        "slot": status["slot"],
        "active": status["active"],
        "retained_bytes": status["retained_bytes"],
        "lag_bytes": status["lag_bytes"],
        "max_slot_lag_bytes": limit,
        **(
            {}
            if ok
            else {"error": f"slot {status['slot']} retains more than {limit} B"}
        ),
    }


def _connect(url: str | None, path: str, method: str = "GET", body=None):
    base = (url or settings.CDC["CONNECT_URL"]).rstrip("/")
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read()
    return json.loads(text) if text else None


def connector_register(url: str | None = None) -> dict:
    """Create or update the connector through Connect's REST API."""
    name = settings.CDC["CONNECTOR_NAME"]
    try:
        return _connect(url, f"/connectors/{name}/config", "PUT", connector_config())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise CDCError(
            f"Kafka Connect refused connector {name}: {exc.code} {detail}"
        ) from None
    except OSError as exc:
        raise CDCError(f"Kafka Connect unreachable: {exc}") from None


def connector_status(url: str | None = None) -> dict:
    """The connector's state from the Connect REST API (``{"error": ...}`` if none)."""
    try:
        return _connect(url, f"/connectors/{settings.CDC['CONNECTOR_NAME']}/status")
    except urllib.error.HTTPError as exc:
        return {"error": f"{exc.code} {exc.read().decode(errors='replace')[:200]}"}
    except (OSError, ValueError) as exc:
        return {"error": f"Kafka Connect unreachable: {exc}"}
