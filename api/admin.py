"""Support staff see an organisation's API keys (never a secret: only its hash exists) and the
usage its CRM reported. Read-only: keys are made and revoked by the organisation's admins."""
from django.contrib import admin

from api.models import ApiKey, UsageReport


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnly):
    list_display = ["name", "organisation", "prefix", "created_at", "last_used_at", "revoked_at"]
    search_fields = ["organisation__name", "prefix", "name"]
    list_select_related = ["organisation"]
    exclude = ["secret_hash"]


@admin.register(UsageReport)
class UsageReportAdmin(ReadOnly):
    list_display = ["received_at", "organisation", "records", "storage_mb", "reported_at",
                    "applied"]
    list_filter = ["applied"]
    search_fields = ["organisation__name"]
    list_select_related = ["organisation"]
