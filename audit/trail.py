"""Write the audit trail: one insert per request, in the change's transaction.

A change's entry shares its transaction (no change without its entry); a read's
entry is written before the answer, and a read whose entry cannot be written
answers 503 (no unrecorded access).
"""

import functools
import getpass
import logging
import sys
from collections.abc import Iterable

from django.db import DatabaseError, connections, router, transaction
from django.db.models import signals
from rest_framework.exceptions import APIException

from audit.models import AuditEntry
from core.request_context import current_request

logger = logging.getLogger(__name__)


class AuditUnavailable(APIException):
    status_code = 503
    default_detail = "The access could not be recorded; try again later."
    default_code = "audit_unavailable"


def role_of(user) -> str:
    """A user's role for the trail: staff, doctor or patient."""
    if user is None:
        return ""
    if user.is_staff or user.is_superuser:
        return "staff"
    if hasattr(user, "doctor"):
        return "doctor"
    return "patient"


def audit_record(
    *,
    action: str,
    record_type: str,
    record_ids: Iterable,
    actor=None,
    role: str = "",
    command: str = "",
    in_change: bool = False,
) -> AuditEntry | None:
    """Append one entry; raise AuditUnavailable (503) when it cannot be written.

    ``in_change``: the caller's transaction makes the change; a failed insert then
    rolls it back too, so no savepoint is needed (two round trips fewer per change).
    """
    context = current_request()
    ids = [str(record_id) for record_id in record_ids]
    entry = AuditEntry(
        action=action,
        actor_id=getattr(actor, "pk", None),
        actor_role=role or role_of(actor),
        record_type=record_type,
        record_ids="," + "".join(f"{record_id}," for record_id in ids),
        client_ip=context.client_ip,
        request_id=context.request_id,
        command=command[:500],
        os_user=_os_user() if command else "",
    )
    try:
        with transaction.atomic(savepoint=not in_change):
            _insert(entry)
    except DatabaseError:
        logger.exception("audit entry could not be written (action %s)", action)
        raise AuditUnavailable() from None
    return entry


@functools.cache
def _insert_statement(alias: str) -> tuple[str, list]:
    """The entry's INSERT .. RETURNING its id, built once, and the fields it sets."""
    meta = AuditEntry._meta
    q = connections[alias].ops.quote_name
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    columns = ", ".join(q(f.column) for f in fields)
    values = ", ".join(["%s"] * len(fields))
    sql = (
        f"INSERT INTO {q(meta.db_table)} ({columns}) VALUES ({values})"
        f" RETURNING {q(meta.pk.column)}"
    )
    return sql, fields


def _insert(entry: AuditEntry) -> None:
    """``entry.save(force_insert=True)``, by a statement built once: building the
    ORM's INSERT cost each request more than running it (the ORM's own save when
    a save signal listens, or the database cannot return the id)."""
    alias = router.db_for_write(AuditEntry)
    connection = connections[alias]
    if (
        not connection.features.can_return_columns_from_insert
        or signals.pre_save.has_listeners(AuditEntry)
        or signals.post_save.has_listeners(AuditEntry)
    ):
        entry.save(force_insert=True)
        return
    sql, fields = _insert_statement(alias)
    params = [f.get_db_prep_save(f.pre_save(entry, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        entry.pk = cursor.fetchone()[0]
    entry._state.adding = False
    entry._state.db = alias


def audit_change(action: str, record, *, by, role: str) -> None:
    """A change's entry for one record; call it inside the change's transaction."""
    audit_record(
        action=action,
        record_type=record._meta.model_name,
        record_ids=[record.pk],
        actor=by,
        role=role,
        in_change=True,
    )


def audit_command(*, action: str, record_type: str, record_ids: Iterable) -> AuditEntry:
    """Record a pipeline command (a republish, a replay): the OS user and its line."""
    return audit_record(
        action=action,
        record_type=record_type,
        record_ids=record_ids,
        role="operator",
        command=" ".join(sys.argv)[:500] or "manage.py",
    )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def audit_read(request, *, action: str, record_type: str, record_ids) -> None:
    """Record what the API's caller was shown, before the answer leaves (else 503)."""
    audit_record(
        action=action,
        record_type=record_type,
        record_ids=record_ids,
        actor=request.user,
    )
