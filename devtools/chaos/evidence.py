"""What the verdict judges, gathered once the pipeline has drained."""

from types import SimpleNamespace

from django.conf import settings
from django.db import close_old_connections

from devtools.chaos.topic import read_topic


def _events():
    from relay.models import OutboxEvent

    rows = OutboxEvent.objects.order_by("seq").values_list(
        "seq",
        "event_id",
        "aggregateid",
        "type",
        "payload",
        "created_at",
        "partition",
        "offset",
    )
    events = []
    for seq, event_id, aid, kind, data, created, partition, offset in rows:
        events.append(
            {
                "seq": seq,
                "event_id": str(event_id),
                "aggregateid": aid,
                "kind": kind.split(".", 1)[-1],
                "date": data.get("date"),
                "slot": data.get("timeSlot"),
                "status": data.get("status"),
                "patient_id": data.get("patientId"),
                "doctor_user_id": data.get("doctorUserId"),
                "created_at": created,
                "partition": partition,
                "offset": offset,
            }
        )
    return events


def _appointments():
    from appointments.models import Appointment

    rows = Appointment.objects.values_list(
        "id", "status", "date", "time_slot", "patient_id", "doctor_id"
    )
    return {
        str(aid): {
            "status": status,
            "date": day.isoformat(),
            "slot": slot.strftime("%H:%M"),
            "patient_id": patient,
            "doctor_id": doctor,
        }
        for aid, status, day, slot, patient, doctor in rows
    }


def _notifications():
    from notifications.handlers import email_subject
    from notifications.models import EmailDelivery, Notification, ProcessedEvent

    inbox = {str(i) for i in ProcessedEvent.objects.values_list("event_id", flat=True)}
    notes = [
        {"id": i, "event_id": str(e), "appointment_id": str(a), "recipient_id": r}
        for i, e, a, r in Notification.objects.values_list(
            "id", "event_id", "appointment_id", "recipient_id"
        )
    ]
    deliveries = [
        {
            "status": status,
            "appointment_id": str(aid),
            "message": (email.lower(), email_subject(kind), message.strip()),
        }
        for status, aid, email, kind, message in EmailDelivery.objects.values_list(
            "status",
            "notification__appointment_id",
            "notification__recipient__email",
            "notification__event_type",
            "notification__message",
        )
    ]
    return inbox, notes, deliveries


def gather(*, stack, load, faults, exit_codes) -> SimpleNamespace:
    close_old_connections()
    events = _events()
    events_of: dict[str, list] = {}
    for e in events:
        events_of.setdefault(e["aggregateid"], []).append(e)
    inbox, notes, deliveries = _notifications()
    ev = SimpleNamespace(
        changes=list(load.changes),
        events=events,
        events_of=events_of,
        aggregate_of={e["event_id"]: e["aggregateid"] for e in events},
        rank={e["event_id"]: e["seq"] for e in events},
        appointments=_appointments(),
        inbox=inbox,
        notifications=notes,
        deliveries=deliveries,
        received=stack.sink.received,
        exit_codes=exit_codes,
        stalls=[
            {**s, "log_after": s["proc"].output()[s["log_from"] :]}
            for s in faults.stalls
        ],
    )
    _topic_evidence(ev, stack, faults)
    return ev


def _topic_evidence(ev, stack, faults) -> None:
    topic = settings.OUTBOX["TOPICS"].get("appointment", "appointment")
    topic = settings.OUTBOX["TOPIC_PREFIX"] + topic
    ev.records = read_topic(stack.broker.address, topic)
    ev.dead_letters = read_topic(stack.broker.address, settings.CONSUMER["DLQ_TOPIC"])
    ev.scope, ev.scope_note, ev.mark_note = None, "", ""
    if faults.wipes:
        ev.scope = faults.wipes[-1][1]
        ev.scope_note = (
            f"events created since {ev.scope.isoformat()} only: the broker was wiped "
            "and outbox_replay refilled it from there"
        )
    if not stack.broker.read_committed_hides_aborted:
        ev.mark_note = "weak on Tansu: read_committed shows aborted records too"
