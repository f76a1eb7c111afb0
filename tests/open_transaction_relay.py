"""A relay stopped dead between produce and commit, for the transaction tests.

Run as ``manage.py shell -c "from tests.open_transaction_relay import main; main()"``:
it does what the relay does for one batch of shard 0 (lead the shard, fence older
producers with init_transactions, claim the pending rows, produce them into the
shard's transaction and wait for the broker to have them) and then, instead of
committing, prints ``OPEN TRANSACTION`` and keeps leading until it is SIGKILLed.
The test kills it there: the moment the real relay passes through between
``producer.flush`` and ``commit_transaction``, held open as long as the test needs.
"""

import json
import time

from relay.leadership import leadership_for_database
from relay.publisher import ShardPublisher, ShardTransaction
from relay.store import store_for_database


def main() -> None:
    store = store_for_database("outbox-relay-open-transaction")
    leadership = leadership_for_database(
        shard_count=1, store=store, lease_timeout=5, holder="open-transaction"
    )
    while 0 not in leadership.held:
        leadership.maintain()
        time.sleep(0.2)
    publisher = ShardPublisher(0)
    publisher.start(timeout=30)
    rows = store.claim(after=0, limit=10_000, shards=None, shard_count=1)
    publisher.begin()
    transaction = ShardTransaction(0, leadership.held[0], publisher, len(rows))
    for row in rows:
        transaction.send(row, json.loads(row.headers))
    assert publisher.producer.flush(30) == 0 and not transaction.errors
    print(f"OPEN TRANSACTION of {len(rows)} events", flush=True)
    while True:  # lead the shard, never commit: the test SIGKILLs us here
        leadership.heartbeat()
        time.sleep(0.5)
