"""The admin's pipeline page: figures, failures, dead letters, timelines, republish."""

import logging

from confluent_kafka import KafkaException
from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods

from audit.trail import audit_record
from messaging import deadletter
from messaging.config import OpsError
from messaging.tail import dead_letters
from monitoring.selectors import event_timelines, failing_events, pipeline_figures
from relay.cdc import cdc_health
from relay.models import OutboxEvent
from relay.replay import outbox_republish

logger = logging.getLogger(__name__)


def dead_letter_summary() -> dict:
    """The dead-letter topic, read from the broker (no table holds dead letters)."""
    topic = settings.CONSUMER["DLQ_TOPIC"]
    try:
        found = dead_letters(topic=topic, limit=20, timeout=3)
    except (OpsError, KafkaException) as exc:
        return {"topic": topic, "error": str(exc), "total": None, "latest": []}
    latest = [_dead_letter_row(r.headers) for r in found.latest]
    return {"topic": topic, "error": "", "total": found.total, "latest": latest}


def _dead_letter_row(headers: dict[str, str]) -> dict[str, str]:
    origin = (
        f"{headers.get(deadletter.ORIGINAL_TOPIC, '')}"
        f"[{headers.get(deadletter.ORIGINAL_PARTITION, '')}]"
        f"@{headers.get(deadletter.ORIGINAL_OFFSET, '')}"
    )
    return {
        "event_id": headers.get("ce_id", ""),
        "event_type": headers.get("ce_type", ""),
        "origin": origin,
        "error": deadletter.describe_error(headers),
        "time": headers.get(deadletter.TIME, ""),
    }


@require_http_methods(["GET", "POST"])
def pipeline_view(request):
    """Staff-only page: the figures, failures, dead letters and the event timeline."""
    if request.method == "POST":
        return _republish(request)
    search = request.GET.get("q", "")
    context = {
        **admin.site.each_context(request),
        "title": "Event pipeline",
        "figures": pipeline_figures(),
        "cdc": cdc_health(),
        "failing": failing_events(),
        "dead_letters": dead_letter_summary(),
        "timelines": event_timelines(search=search),
        "search": search,
    }
    return TemplateResponse(request, "admin/pipeline.html", context)


def _republish(request):
    one = request.POST.get("one")
    seqs = [one] if one else request.POST.getlist("events")
    seqs = [s for s in seqs if s.isdigit()]
    if not seqs:
        messages.warning(request, "Select at least one event to republish.")
        return redirect("admin-pipeline")
    with transaction.atomic():  # the republish and its audit entry, or neither
        count = outbox_republish(events=OutboxEvent.objects.filter(seq__in=seqs))
        audit_record(
            action="republished",
            record_type="outbox",
            record_ids=seqs,
            actor=request.user,
        )
    logger.info("pipeline: %d events republished by user %s", count, request.user.pk)
    if count:
        messages.success(
            request, f"Republished {count} event(s): the relay sends them again."
        )
    else:
        messages.warning(
            request, "Nothing republished: the selected events are not published yet."
        )
    return redirect("admin-pipeline")
