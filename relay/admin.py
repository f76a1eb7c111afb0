from django.contrib import admin

from core.admin import ReadOnlyAdmin
from relay.models import OutboxEvent, ShardLease


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    """Outbox rows are history: staff read them, only the relay writes them."""

    list_display = [
        "seq",
        "type",
        "aggregateid",
        "topic",
        "created_at",
        "published_at",
        "partition",
        "offset",
        "attempts",
    ]
    list_filter = ["type", "topic", ("published_at", admin.EmptyFieldListFilter)]
    search_fields = ["aggregateid", "=event_id"]
    date_hierarchy = "created_at"


@admin.register(ShardLease)
class ShardLeaseAdmin(ReadOnlyAdmin):
    """Which relay leads which shard; the epoch grows by one at every takeover."""

    list_display = ["shard", "holder", "epoch", "acquired_at"]
