"""Admin pages that record who listed, opened and changed health records."""

from django.contrib import admin
from django.http import HttpResponse

from audit.models import AuditEntry
from audit.trail import AuditUnavailable, audit_record

Action = AuditEntry.Action


class AuditedAdmin(admin.ModelAdmin):
    """Record the rows a staff member lists or opens, and every change saved."""

    audit_record_type = ""

    def _audit(self, request, action: str, ids) -> HttpResponse | None:
        try:
            audit_record(
                action=action,
                record_type=self.audit_record_type,
                record_ids=ids,
                actor=request.user,
            )
        except AuditUnavailable as exc:
            return HttpResponse(str(exc.detail), status=503, content_type="text/plain")
        return None

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if request.method == "GET" and changelist is not None:
            ids = [obj.pk for obj in changelist.result_list]
            return self._audit(request, Action.ADMIN_LISTED, ids) or response
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            return self._audit(request, Action.ADMIN_VIEWED, [object_id]) or response
        return response

    def log_change(self, request, obj, message):
        audit_record(
            action=Action.ADMIN_CHANGED,
            record_type=self.audit_record_type,
            record_ids=[obj.pk],
            actor=request.user,
        )
        return super().log_change(request, obj, message)
