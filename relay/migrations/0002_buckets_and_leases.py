"""Shard at claim time from a stable bucket, time-ordered event ids, shard leases."""

import zlib

from django.db import migrations, models

import relay.models

BUCKETS = 1024


def bucket_pending_rows(apps, schema_editor):
    """Give rows still waiting the bucket of their key (published rows keep 0)."""
    OutboxEvent = apps.get_model("relay", "OutboxEvent")
    rows = list(
        OutboxEvent.objects.filter(published_at__isnull=True).only("seq", "key")
    )
    for row in rows:
        row.bucket = zlib.crc32(row.key.encode()) % BUCKETS
    OutboxEvent.objects.bulk_update(rows, ["bucket"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [
        ("relay", "0001_initial"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="outboxevent", name="outbox_pending_idx"),
        migrations.RenameField(
            model_name="outboxevent", old_name="shard", new_name="bucket"
        ),
        migrations.RunPython(bucket_pending_rows, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="outboxevent",
            index=models.Index(
                condition=models.Q(("published_at__isnull", True)),
                fields=["seq"],
                name="outbox_pending_idx",
            ),
        ),
        migrations.AlterField(
            model_name="outboxevent",
            name="event_id",
            field=models.UUIDField(
                db_column="id", default=relay.models.uuid7, unique=True
            ),
        ),
        migrations.CreateModel(
            name="ShardLease",
            fields=[
                (
                    "shard",
                    models.PositiveSmallIntegerField(primary_key=True, serialize=False),
                ),
                ("epoch", models.BigIntegerField(default=0)),
                ("holder", models.CharField(blank=True, max_length=200)),
                ("acquired_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={"ordering": ["shard"]},
        ),
    ]
