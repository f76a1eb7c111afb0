"""The rate-limit counters in an UNLOGGED table (PostgreSQL).

A throttle's upsert commits on its own, before the request's work: logged, every
request waited for a WAL flush of a counter. Unlogged, the counters write no WAL
and their commit does not wait; a crash of PostgreSQL empties the table (every
client starts a fresh window) and replicas do not have it: rate limits, not records.
"""

from django.db import migrations


def set_unlogged(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE core_rate_counter SET UNLOGGED")


def set_logged(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE core_rate_counter SET LOGGED")


class Migration(migrations.Migration):
    dependencies = [("core", "0001_initial")]

    operations = [migrations.RunPython(set_unlogged, set_logged, elidable=False)]
