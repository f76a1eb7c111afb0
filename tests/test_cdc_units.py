"""CDC pieces that need no Kafka Connect: pgoutput parsing, the mode switch, config."""

import struct
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from relay import cdc, pgoutput
from relay.models import OutboxEvent
from relay.retention import outbox_purge
from tests.relay_support import enqueue_events, make_events


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def relation(oid: int, table: str, columns: list[str]) -> bytes:
    body = b"R" + struct.pack(">i", oid) + cstr("public") + cstr(table) + b"d"
    body += struct.pack(">h", len(columns))
    for name in columns:
        body += b"\0" + cstr(name) + struct.pack(">iI", 25, 0xFFFFFFFF)
    return body


def insert(oid: int, values: list[str | None]) -> bytes:
    body = b"I" + struct.pack(">i", oid) + b"N" + struct.pack(">h", len(values))
    for v in values:
        if v is None:
            body += b"n"
        else:
            body += b"t" + struct.pack(">i", len(v.encode())) + v.encode()
    return body


def test_pgoutput_lists_one_column_of_the_table_inserts_in_wal_order():
    begin = b"B" + b"\0" * 20
    messages = [
        begin,
        relation(7, "relay_outboxevent", ["seq", "id", "traceparent"]),
        relation(8, "other", ["id"]),
        insert(7, ["1", "e-1", None]),
        insert(8, ["not-ours"]),
        insert(7, ["2", "e-2", "00-x"]),
        b"C" + b"\0" * 25,
    ]
    assert pgoutput.inserted(messages, "relay_outboxevent", "id") == ["e-1", "e-2"]


def test_pgoutput_refuses_a_truncated_message():
    with pytest.raises(pgoutput.ProtocolError):
        pgoutput.inserted(
            [relation(7, "t", ["id"]), insert(7, ["abc"])[:-1]], "t", "id"
        )


@pytest.mark.django_db
def test_run_relay_refuses_to_start_in_cdc_mode(settings):
    settings.OUTBOX_RELAY = "cdc"
    with pytest.raises(CommandError, match="OUTBOX_RELAY=cdc.*run_relay must not run"):
        call_command("run_relay", once=True)


@pytest.mark.django_db
def test_cdc_mode_retention_removes_rows_by_age_alone(settings):
    with transaction.atomic():
        enqueue_events(make_events(["k1", "k2"], 1))
    old = timezone.now() - timedelta(days=8)
    OutboxEvent.objects.filter(key="k1").update(created_at=old)
    settings.OUTBOX_RELAY = "poll"
    assert outbox_purge() == 0  # poll mode: an unpublished row is never purged
    settings.OUTBOX_RELAY = "cdc"
    assert outbox_purge() == 1
    assert list(OutboxEvent.objects.values_list("key", flat=True)) == ["k2"]


@pytest.mark.django_db
def test_enqueue_fills_the_cloudevent_columns_from_the_headers():
    with transaction.atomic():
        [event] = make_events(["k1"], 1)
        enqueue_events([event])
    row = OutboxEvent.objects.get()
    h = row.headers
    assert (row.ce_specversion, row.ce_source, row.ce_subject, row.ce_time) == (
        h["ce_specversion"],
        h["ce_source"],
        h["ce_subject"],
        h["ce_time"],
    )
    assert row.traceparent is None and "traceparent" not in h


def test_connector_config_follows_settings_and_never_holds_a_password(settings):
    from django.db import connection

    settings.CDC = {**settings.CDC, "DATABASE_HOST": "postgres", "SLOT_NAME": "s1"}
    config = cdc.connector_config()
    assert config["database.hostname"] == "postgres"
    assert config["database.dbname"] == connection.settings_dict["NAME"]
    assert config["slot.name"] == "s1"
    assert config["table.include.list"] == "public.relay_outboxevent"
    placement = config["transforms.outbox.table.fields.additional.placement"]
    assert "id:header:ce_id" in placement and "ce_time:header:ce_time" in placement
    password = connection.settings_dict.get("PASSWORD")
    if password:
        assert password not in str(config)


@pytest.mark.django_db
def test_cdc_health_is_ok_in_poll_mode_and_names_a_missing_slot_in_cdc_mode(settings):
    assert cdc.cdc_health() == {"ok": True, "mode": "poll"}
    settings.OUTBOX_RELAY = "cdc"
    settings.CDC = {**settings.CDC, "SLOT_NAME": "hc_test_missing_slot"}
    health = cdc.cdc_health()
    assert health["ok"] is False and "hc_test_missing_slot" in health["error"]
