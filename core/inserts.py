"""One-row INSERTs whose statement is built once per model: a booking's hot writes.

``Model.save()`` compiles its INSERT anew on every call, and on a booking that
cost more Python than the three rows' round trips (bench/e2e.py). ``insert_one``
writes the same row with the same values (each field's ``pre_save`` and
``get_db_prep_save``, so ``auto_now`` and JSON behave as in ``save()``), through
Django's cursor (errors are Django's, the query is counted and logged). A model
with save-signal receivers is saved by ``save()``, so they still run.
"""

from functools import cache

from django.db import connections, router
from django.db.models import signals


@cache
def _plan(model, alias: str) -> tuple[str, list, object]:
    """The INSERT of every concrete field but the auto id, which it returns."""
    meta, connection = model._meta, connections[alias]
    q = connection.ops.quote_name
    auto = meta.auto_field
    fields = [f for f in meta.concrete_fields if f is not auto and not f.generated]
    sql = (
        f"INSERT INTO {q(meta.db_table)} ({', '.join(q(f.column) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    if auto is not None:
        sql += f" RETURNING {q(auto.column)}"
    return sql, fields, auto


def insert_one(obj) -> None:
    """INSERT ``obj`` as ``obj.save(force_insert=True)`` would, and mark it saved."""
    model = type(obj)
    alias = router.db_for_write(model, instance=obj)
    connection = connections[alias]
    sql, fields, auto = _plan(model, alias)
    if _has_save_receivers(model) or (
        auto is not None and not _returns_auto_id(obj, auto, connection)
    ):
        obj.save(force_insert=True)
        return
    values = [f.pre_save(obj, True) for f in fields]
    if any(hasattr(v, "resolve_expression") for v in values):
        obj.save(force_insert=True)  # expressions and database defaults
        return
    params = [
        f.get_db_prep_save(v, connection) for f, v in zip(fields, values, strict=True)
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if auto is not None:
            setattr(obj, auto.attname, cursor.fetchone()[0])
    obj._state.adding = False
    obj._state.db = alias


def _returns_auto_id(obj, auto, connection) -> bool:
    """The database assigns the id and returns it (no id set, RETURNING known)."""
    return (
        getattr(obj, auto.attname) is None
        and connection.features.can_return_columns_from_insert
    )


def _has_save_receivers(model) -> bool:
    return signals.pre_save.has_listeners(model) or signals.post_save.has_listeners(
        model
    )
