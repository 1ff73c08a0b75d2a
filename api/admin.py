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
    """A key's name and when it was last used; nothing of the key itself."""

    list_display = ["name", "organisation", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["created_at", "last_used_at", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["organisation__name", "organisation__users__email", "name", "prefix"]
    list_select_related = ["organisation"]
    fields = ["organisation", "name", "created_at", "last_used_at", "revoked_at"]


@admin.register(UsageReport)
class UsageReportAdmin(ReadOnly):
    list_display = ["received_at", "organisation", "records", "storage_mb", "reported_at",
                    "applied"]
    list_filter = ["applied", "received_at", "reported_at"]
    search_fields = ["organisation__name", "organisation__users__email"]
    list_select_related = ["organisation"]
