"""CloudEvents attributes as plain columns, for Debezium's outbox event router.

Backwards compatible: new columns with defaults; pending rows get them from
``headers``, so a connector started after this migration sends them complete.
"""

from django.db import migrations, models


def fill_pending_rows(apps, schema_editor):
    OutboxEvent = apps.get_model("relay", "OutboxEvent")
    rows = OutboxEvent.objects.filter(published_at__isnull=True).only("seq", "headers")
    for row in rows.iterator(chunk_size=2000):
        h = row.headers or {}
        OutboxEvent.objects.filter(seq=row.seq).update(
            ce_specversion=h.get("ce_specversion", "1.0"),
            ce_source=h.get("ce_source", ""),
            ce_subject=h.get("ce_subject", ""),
            ce_time=h.get("ce_time", ""),
            traceparent=h.get("traceparent") or None,
        )


class Migration(migrations.Migration):
    dependencies = [
        ("relay", "0002_buckets_and_leases"),
    ]

    operations = [
        migrations.AddField(
            model_name="outboxevent",
            name="ce_specversion",
            field=models.CharField(blank=True, db_default="1.0", max_length=8),
        ),
        migrations.AddField(
            model_name="outboxevent",
            name="ce_source",
            field=models.CharField(blank=True, db_default="", max_length=255),
        ),
        migrations.AddField(
            model_name="outboxevent",
            name="ce_subject",
            field=models.CharField(blank=True, db_default="", max_length=255),
        ),
        migrations.AddField(
            model_name="outboxevent",
            name="ce_time",
            field=models.CharField(blank=True, db_default="", max_length=40),
        ),
        migrations.AddField(
            model_name="outboxevent",
            name="traceparent",
            field=models.CharField(blank=True, max_length=55, null=True),
        ),
        migrations.RunPython(fill_pending_rows, migrations.RunPython.noop),
    ]
