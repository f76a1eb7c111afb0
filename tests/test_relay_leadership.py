"""Several relays: one leader per shard, takeover after a leader dies or stalls, fencing."""

import signal
import threading
import time

import pytest
from confluent_kafka import KafkaException
from django.db import connection, transaction

from relay.events import enqueue
from relay.leadership import PostgresLeadership
from relay.models import OutboxEvent, ShardLease
from relay.publisher import (
    DeliveryErrorPolicy,
    Outcome,
    ShardPublisher,
    ShardTransaction,
)
from relay.store import PostgresStore
from tests.conftest import wait_until
from tests.kafka_utils import headers_of, read_topic
from tests.relay_support import (
    assert_complete_and_ordered,
    enqueue_events,
    make_events,
    new_keys,
    run_relay_once,
)

pytestmark = pytest.mark.django_db(transaction=True)


def holder_pid(shard: int) -> int | None:
    lease = ShardLease.objects.filter(shard=shard).first()
    return int(lease.holder.rsplit(":", 1)[1]) if lease and lease.holder else None


class Load(threading.Thread):
    """Commits events one transaction each, round-robin over keys, until stopped."""

    def __init__(self, keys, rate: float):
        super().__init__(daemon=True)
        self.keys, self.rate = keys, rate
        self.stopped = threading.Event()
        self.count = 0

    def run(self):
        from tests.relay_support import make_events

        try:
            while not self.stopped.is_set():
                key = self.keys[self.count % len(self.keys)]
                with transaction.atomic():
                    enqueue(make_events([key], 1)[0])
                self.count += 1
                time.sleep(1 / self.rate)
        finally:
            connection.close()


@pytest.mark.postgres_only
def test_three_relays_share_shards_and_survive_the_leader_being_killed_under_load(
    broker, topic, start_process
):
    first = start_process("run_relay", "--shards", "2", name="relay-a")
    assert first.wait_for_output("leading shard 1") and first.wait_for_output(
        "leading shard 0"
    )
    load = Load(new_keys(30), rate=200)
    load.start()
    relays = {first.proc.pid: first}
    for name in ("relay-b", "relay-c"):
        proc = start_process("run_relay", "--shards", "2", name=name)
        relays[proc.proc.pid] = proc
    try:
        # The first relay hands one shard over to a newcomer: each leads one.
        assert wait_until(lambda: holder_pid(0) != holder_pid(1), timeout=15), (
            first.output
        )

        leader = relays[holder_pid(0)]
        epoch = ShardLease.objects.get(shard=0).epoch
        killed_at = time.time()
        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait()
        assert wait_until(
            lambda: ShardLease.objects.get(shard=0).epoch > epoch, timeout=10
        ), "nobody took over shard 0"
        lease = ShardLease.objects.get(shard=0)
        assert lease.acquired_at.timestamp() - killed_at <= 5.0
        assert holder_pid(0) in relays and holder_pid(0) != leader.proc.pid
        time.sleep(1.5)  # keep the load on across the takeover
    finally:
        load.stopped.set()
        load.join()
    assert wait_until(lambda: not OutboxEvent.objects.pending().exists(), timeout=30)
    total = OutboxEvent.objects.count()
    assert total == load.count
    records = read_topic(broker.address, topic, expect=total, timeout=60)
    assert_complete_and_ordered(records)
    for proc in relays.values():
        if proc is not leader:
            assert proc.terminate() == 0


def test_one_relay_leads_at_a_time_and_a_standby_takes_over_when_it_dies(
    broker, topic, start_process
):
    """On SQLite by a file lock, on PostgreSQL by the shard's advisory lock."""
    a = start_process("run_relay", name="relay-a")
    assert a.wait_for_output("producer ready")
    b = start_process("run_relay", name="relay-b")
    assert b.wait_for_output("relay: started")
    enqueue_events(make_events(new_keys(4), 2))
    assert wait_until(lambda: not OutboxEvent.objects.pending().exists(), timeout=20)
    time.sleep(1.5)
    assert "leading shard" not in b.output, "two relays led at once"

    a.kill()
    assert b.wait_for_output("producer ready", timeout=8), b.output
    enqueue_events(make_events(new_keys(4), 2))
    assert wait_until(lambda: not OutboxEvent.objects.pending().exists(), timeout=20)
    records = read_topic(broker.address, topic, expect=16)
    assert len(records) == 16
    assert_complete_and_ordered(records)
    assert b.terminate() == 0


@pytest.mark.postgres_only
def test_stalled_leader_is_fenced_out_by_the_new_leader(broker, topic):
    enqueue_events(make_events(new_keys(2), 3))
    # Leader A takes the shard, claims the rows, then stalls before producing them.
    store = PostgresStore("outbox-relay-stalled")
    stalled = PostgresLeadership(
        shard_count=1, store=store, lease_timeout=5, holder="stalled"
    )
    assert stalled.maintain()[0] == [0]
    epoch = stalled.held[0]
    publisher = ShardPublisher(0)
    publisher.start(timeout=10)
    rows = store.claim(after=0, limit=100, shards=None, shard_count=1)
    assert len(rows) == 6
    # While it stalls, PostgreSQL ends its idle session (OUTBOX_LEASE_TIMEOUT): the lock is free.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(%s)", [stalled.conn.info.backend_pid]
        )

    # Relay B takes the shard over (new epoch, init_transactions) and publishes everything.
    assert run_relay_once() == 6
    marked = dict(OutboxEvent.objects.values_list("seq", "published_at"))
    assert ShardLease.objects.get(shard=0).epoch == epoch + 1

    # A wakes up and carries on with the rows it had claimed: the broker refuses them...
    part = ShardTransaction(0, epoch, publisher, len(rows))
    publisher.begin()
    for row in rows:
        part.send(row, {"ce_id": "from-stalled-leader"})
    with pytest.raises(KafkaException) as refused:
        publisher.commit(deadline=time.monotonic() + 10)
    assert DeliveryErrorPolicy.classify(refused.value.args[0]) is Outcome.FENCED
    # ...and the database refuses its marks.
    assert (
        store.mark_published(
            seqs=[r.seq for r in rows],
            partitions=[0] * 6,
            offsets=[0] * 6,
            shard=0,
            epoch=epoch,
            published_at=time_now(),
        )
        == 0
    )
    assert dict(OutboxEvent.objects.values_list("seq", "published_at")) == marked
    store.close()

    records = read_topic(broker.address, topic, expect=6)
    assert len(records) == 6, "nothing from the stalled leader reached the topic"
    assert "from-stalled-leader" not in {headers_of(r)["ce_id"] for r in records}
    assert_complete_and_ordered(records)


@pytest.mark.postgres_only
def test_a_stalled_relay_loses_its_shard_after_the_lease_timeout(
    broker, topic, start_process
):
    env = {"OUTBOX_LEASE_TIMEOUT": "2s"}
    a = start_process("run_relay", env=env, name="relay-a")
    assert a.wait_for_output("producer ready")
    b = start_process("run_relay", env=env, name="relay-b")
    assert b.wait_for_output("relay: started")
    keys = new_keys(5)
    enqueue_events(make_events(keys, 2))
    assert wait_until(lambda: not OutboxEvent.objects.pending().exists(), timeout=20)

    a.proc.send_signal(signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        enqueue_events(make_events(keys, 2))
        assert b.wait_for_output("producer ready", timeout=15), b.output
        # The lease (2 s) plus a heartbeat and a takeover attempt of at most a second each.
        assert time.monotonic() - stopped_at <= 8.0
        assert wait_until(
            lambda: not OutboxEvent.objects.pending().exists(), timeout=20
        )
    finally:
        a.proc.send_signal(signal.SIGCONT)
    assert a.wait_for_output("giving up shards", timeout=10), a.output
    enqueue_events(make_events(keys, 2))
    assert wait_until(lambda: not OutboxEvent.objects.pending().exists(), timeout=20)
    records = read_topic(broker.address, topic, expect=30)
    assert len(records) == 30, (
        "every event exactly once: the stalled relay published nothing"
    )
    assert_complete_and_ordered(records)
    assert a.terminate() == 0 and b.terminate() == 0


def time_now():
    from django.utils import timezone

    return timezone.now()
