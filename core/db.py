"""What "the database is down" means to a loop that retries."""

from django.db import Error, InterfaceError, OperationalError, ProgrammingError

try:  # raw psycopg connections (relay leadership, LISTEN) raise its own errors
    import psycopg
except ImportError:  # SQLite-only installs
    psycopg = None

# Unreachable, restarting, a lock or statement timeout, a deadlock, a lost
# connection (Django maps all of these to OperationalError or InterfaceError), or
# the schema not migrated yet (ProgrammingError): worth a retry, not a dead letter.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, ProgrammingError)

# Any error raised by the database layer, Django's or a raw psycopg connection's:
# for loops that log, back off and go on whatever the database said.
DATABASE_ERRORS = (Error, psycopg.Error) if psycopg is not None else (Error,)
