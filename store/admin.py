"""Staff edit the catalog here. Prices are versions: add a new row, never edit a saved one."""
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from store.models import AddOn, Plan, Price


class PriceInline(admin.TabularInline):
    model = Price
    extra = 0
    fields = ["cycle", "amount", "effective_from"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "name_ja", "code", "rank", "max_users", "max_records", "is_public"]
    inlines = [PriceInline]


@admin.register(AddOn)
class AddOnAdmin(admin.ModelAdmin):
    list_display = ["name", "name_ja", "code", "unit_name", "storage_mb_per_unit"]
    inlines = [PriceInline]


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ["__str__", "plan", "addon", "cycle", "amount", "effective_from"]
    list_filter = ["cycle", "amount_currency", "plan", "addon"]
    fieldsets = [(None, {
        "fields": ["plan", "addon", "cycle", "amount", "effective_from"],
        "description": _("A saved price never changes. To change a price, add a new price for "
                         "the same item, cycle and currency with a later 'effective from'."),
    })]

    def get_readonly_fields(self, request, obj=None):
        return ["plan", "addon", "cycle", "amount", "effective_from"] if obj else []

    def has_delete_permission(self, request, obj=None):
        return False
