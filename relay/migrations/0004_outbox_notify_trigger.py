"""Wake the relays from the database: a statement trigger NOTIFYs on outbox inserts.

Before this, enqueue() sent ``SELECT pg_notify(...)`` as a statement of its own in
every business transaction: one round trip per booking. PostgreSQL delivers the
notification on commit either way, and folds duplicates within a transaction.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION relay_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('healthcare_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER relay_outbox_notify AFTER INSERT ON relay_outboxevent
    FOR EACH STATEMENT EXECUTE FUNCTION relay_outbox_notify();
"""

DROP = """
DROP TRIGGER IF EXISTS relay_outbox_notify ON relay_outboxevent;
DROP FUNCTION IF EXISTS relay_outbox_notify();
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("relay", "0003_cloudevent_columns")]

    operations = [migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP))]
