"""Django's PostgreSQL backend, with a cheaper check of a reused connection.

With ``CONN_HEALTH_CHECKS`` Django checks a persistent connection at the first query
of every request with ``SELECT 1``: a round trip, and work for both processes, on
every request. An idle connection has nothing to read; one the server has ended
(a restart, ``pg_terminate_backend``, an idle timeout) has its error message or
the end of the stream waiting. So: poll the socket without waiting, and only when
something is there (or a transaction is open) ask with ``SELECT 1`` as Django does.
"""

import select

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        if self.connection is None or self.connection.closed:
            return False
        if self.connection.info.transaction_status != TransactionStatus.IDLE:
            return super().is_usable()
        try:
            poller = select.poll()
            poller.register(self.connection.fileno(), select.POLLIN | select.POLLPRI)
            waiting = poller.poll(0)
        except (OSError, ValueError):
            return False
        return not waiting or super().is_usable()
