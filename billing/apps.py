from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self):
        from billing import books, ledger_checks  # noqa: F401  (register the books' checks)
        from billing.entitlements_cache import connect_signals

        connect_signals()  # saves that change what an organisation may do forget its answer
