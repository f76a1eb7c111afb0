"""One of three Apache Kafka nodes SIGKILLed under load (RF 3, min.insync.replicas 2).

The README promises for the production overlay that one broker can be lost without
losing writes. Here the leader of a partition of the topic dies while the relay
publishes and the consumer reads: nothing is lost, nothing applied twice, relay and
consumer carry on by themselves, and the killed node rejoins the in-sync replicas.

kafka_only: three nodes, replication and leader election are Apache Kafka's.
"""

import threading
import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from django.db import connection, transaction

from notifications.models import Notification, ProcessedEvent
from relay.events import enqueue_many
from relay.models import OutboxEvent
from tests.conftest import wait_until
from tests.consumer_kit import booked_events, make_people, run_consumer
from tests.kafka_utils import read_topic
from tests.relay_support import assert_complete_and_ordered

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.kafka_only]


class Bookings(threading.Thread):
    """Commits booked events, a few per transaction, at about ``rate`` per second."""

    def __init__(self, people, rate: float):
        super().__init__(daemon=True)
        self.people, self.rate = people, rate
        self.stopped = threading.Event()
        self.count = 0

    def run(self):
        try:
            while not self.stopped.is_set():
                with transaction.atomic():
                    enqueue_many(booked_events(self.people, 5))
                self.count += 5
                time.sleep(5 / self.rate)
        finally:
            connection.close()


def in_sync(admin: AdminClient, topic: str, node: int) -> bool:
    partitions = admin.list_topics(topic, timeout=5).topics[topic].partitions
    return all(node in p.isrs for p in partitions.values())


def test_killing_a_partition_leader_loses_nothing_and_the_node_rejoins(
    kafka_cluster, topic, start_process, make_user
):
    admin = AdminClient({"bootstrap.servers": kafka_cluster.address})
    new = [NewTopic(t, 3, 3) for t in (topic, f"{topic}.dlq")]
    for future in admin.create_topics(new).values():
        future.result(30)
    env = {"KAFKA_BROKERS": kafka_cluster.address, "KAFKA_REPLICATION_FACTOR": "3"}
    relay = start_process("run_relay", env=env, name="relay")
    consumer = run_consumer(start_process, "--no-email", env=env)
    assert relay.wait_for_output("producer ready", timeout=60), relay.output
    assert consumer.wait_for_output("consumer: assigned", timeout=60), consumer.output

    load = Bookings(make_people(make_user), rate=100)
    load.start()
    try:
        assert wait_until(lambda: ProcessedEvent.objects.count() >= 50, timeout=60)
        leader = admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader
        kafka_cluster.kill_node(leader)
        killed_at = time.monotonic()
        # Load goes on while the cluster elects new leaders (it notices in 3 s).
        before = ProcessedEvent.objects.count()
        assert wait_until(
            lambda: ProcessedEvent.objects.count() >= before + 100, timeout=60
        ), relay.output[-3000:] + consumer.output[-3000:]
        resumed_in = time.monotonic() - killed_at
        print(f"pipeline delivered 100 more events {resumed_in:.1f} s after the kill")
        kafka_cluster.start_node(leader)
    finally:
        load.stopped.set()
        load.join()

    total = load.count
    assert wait_until(lambda: not OutboxEvent.objects.pending().exists(), timeout=60)
    assert wait_until(lambda: ProcessedEvent.objects.count() == total, timeout=60), (
        consumer.output[-3000:]
    )
    assert OutboxEvent.objects.count() == total
    assert Notification.objects.count() == 2 * total  # none applied twice
    records = read_topic(kafka_cluster.address, topic, expect=total, timeout=60)
    assert_complete_and_ordered(records)
    assert relay.proc.poll() is None and consumer.proc.poll() is None  # never restarted
    assert wait_until(lambda: in_sync(admin, topic, leader), timeout=90)
    assert relay.terminate() == 0, relay.output[-3000:]
    assert consumer.terminate() == 0, consumer.output[-3000:]
