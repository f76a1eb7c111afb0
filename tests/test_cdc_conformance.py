"""Debezium's outbox event router writes the record run_relay writes, field by field.

One booking through the API; its outbox row is published by run_relay, and the
connector (on a slot created before the booking) delivers the same row. The two
records of the one event are compared.
"""

import json

import pytest

from relay import cdc
from relay.models import OutboxEvent
from tests.cdc_support import *  # noqa: F403 (the CDC fixtures)
from tests.kafka_utils import read_topic
from tests.relay_support import run_relay_once
from tests.test_flow import next_weekday, seed_request

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
# What the consumer needs, and what run_relay sends.
CLOUDEVENT_HEADERS = {
    "ce_id",
    "ce_type",
    "ce_source",
    "ce_time",
    "ce_subject",
    "ce_specversion",
    "content-type",
}


def book(client, doctor, slot: str, **headers):
    response = client.post(
        "/api/appointments",
        seed_request(doctor, next_weekday(), slot),
        format="json",
        **headers,
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_connector_record_matches_run_relay_record_field_by_field(
    patient_client, doctor, kafka, cdc_topic, connector
):
    cdc.cdc_setup()  # the slot first: it captures both bookings
    traced = book(patient_client, doctor, "10:00", HTTP_TRACEPARENT=TRACEPARENT)
    untraced = book(patient_client, doctor, "11:00")
    assert run_relay_once() == 2
    relay_records = read_topic(kafka.address, cdc_topic, expect=2)
    connector.start()
    records = read_topic(kafka.address, cdc_topic, expect=4)
    assert len(records) == 4
    # read_topic returns fresh message objects: tell the paths apart by offset
    relay_offsets = {(r.partition(), r.offset()) for r in relay_records}
    cdc_records = [
        r for r in records if (r.partition(), r.offset()) not in relay_offsets
    ]
    assert len(cdc_records) == 2

    for key, traceparent in ((traced, TRACEPARENT), (untraced, None)):
        [polled] = [r for r in relay_records if r.key().decode() == key]
        [captured] = [r for r in cdc_records if r.key().decode() == key]
        row = OutboxEvent.objects.get(aggregateid=key)
        assert captured.topic() == polled.topic() == row.topic == cdc_topic
        assert captured.key() == polled.key() == key.encode()
        assert captured.value() == polled.value()  # byte for byte: jsonb's text
        assert json.loads(captured.value()) == row.payload
        relay_headers, cdc_headers = dict(polled.headers()), dict(captured.headers())
        assert set(relay_headers) == CLOUDEVENT_HEADERS | (
            {"traceparent"} if traceparent else set()
        )
        for name in CLOUDEVENT_HEADERS:
            assert cdc_headers[name] == relay_headers[name], name
        assert cdc_headers["ce_id"] == str(row.event_id).encode()
        assert cdc_headers["ce_specversion"] == b"1.0"
        # the one difference that remains: an untraced event's traceparent header
        # is there with a null value (the consumer reads it as absent)
        assert set(cdc_headers) == CLOUDEVENT_HEADERS | {"traceparent"}
        expected = traceparent.encode() if traceparent else None
        assert cdc_headers["traceparent"] == expected
        assert relay_headers.get("traceparent") == expected


def test_config_is_json_for_the_rest_api(cdc_slot, capsys):
    from django.core.management import call_command

    call_command("outbox_cdc", "config")
    body = json.loads(capsys.readouterr().out)
    assert body["name"] == cdc_slot["CONNECTOR_NAME"]
    config = body["config"]
    assert config["plugin.name"] == "pgoutput"
    assert config["slot.name"] == cdc_slot["SLOT_NAME"]
    assert config["snapshot.mode"] == "no_data"
    assert (
        config["transforms.outbox.type"] == "io.debezium.transforms.outbox.EventRouter"
    )
    assert all(isinstance(v, str) for v in config.values())
    # a password is never printed: the worker reads it from its environment
    assert config["database.password"] in ("", f"${{env:{cdc.PASSWORD_VARIABLE}}}")
