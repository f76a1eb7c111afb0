"""In cdc mode /readyz and the pipeline page watch the replication slot's retained WAL."""

import uuid

import pytest

from relay import cdc
from tests.relay_support import enqueue_events, make_events, new_keys

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def slot(settings):
    """A publication and slot of this test's own, dropped afterwards."""
    name = f"hc_test_{uuid.uuid4().hex[:10]}"
    settings.OUTBOX_RELAY = "cdc"
    settings.CDC = {**settings.CDC, "SLOT_NAME": name, "PUBLICATION": name}
    cdc.cdc_setup()
    yield name
    cdc.cdc_teardown()


def test_readyz_fails_naming_the_slot_once_it_retains_more_than_the_limit(
    client, settings, slot, broker
):
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.content
    check = ready.json()["checks"]["cdc"]
    assert check["ok"] is True and check["slot"] == slot and check["active"] is False
    assert ready.json()["relay"] == {"ok": True, "mode": "cdc"}

    enqueue_events(make_events(new_keys(20), 5, size=2000))  # WAL nobody reads
    settings.CDC = {**settings.CDC, "MAX_SLOT_LAG_BYTES": 100_000}
    failing = client.get("/readyz")
    assert failing.status_code == 503
    check = failing.json()["checks"]["cdc"]
    assert check["retained_bytes"] > 100_000
    assert f"slot {slot} retains more than 100000 B" in failing.json()["reasons"]


def test_pipeline_page_shows_the_mode_and_the_slot_retained_bytes(
    client, admin_user, slot
):
    client.force_login(admin_user)
    page = client.get("/admin/pipeline/").content.decode()
    assert "Relay mode: <strong>cdc</strong>" in page
    assert f"slot {slot} " in page and 'id="cdc-retained"' in page


def test_pipeline_page_says_poll_mode_by_default(client, admin_user):
    client.force_login(admin_user)
    assert (
        "Relay mode: <strong>poll</strong>"
        in client.get("/admin/pipeline/").content.decode()
    )
