"""The CRM's access to Kanri: an organisation's API keys, and the usage it reports (append-only).
"""
from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Organisation
from store import clock


class ApiKey(models.Model):
    """One key an administrator made for the CRM. Only a hash of its secret is stored; the full
    key (`kanri_<prefix>_<secret>`) is shown once, at creation. The public prefix finds the row
    (a unique index), the hash proves the secret."""

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT,
                                     related_name="api_keys")
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)  # sha256, hex
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(_("created"), default=clock.now)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        verbose_name = _("API key")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organisation", "-created_at"], name="apikey_org_created")]

    def __str__(self) -> str:
        return f"{self.name} (kanri_{self.prefix}_…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class UsageReport(models.Model):
    """Counts as the CRM reported them, every report kept. `applied` says whether it became the
    organisation's usage (a report not newer than the one applied last is kept and ignored)."""

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT,
                                     related_name="usage_reports")
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="+")
    records = models.PositiveBigIntegerField()
    storage_mb = models.PositiveBigIntegerField()
    reported_at = models.DateTimeField()
    received_at = models.DateTimeField(default=clock.now)
    applied = models.BooleanField()

    class Meta:
        verbose_name = _("usage report")
        indexes = [models.Index(fields=["organisation", "-received_at"],
                                name="usagereport_org_received")]

    def __str__(self) -> str:
        return f"{self.organisation_id} {self.reported_at:%Y-%m-%d %H:%M} {self.records}"
