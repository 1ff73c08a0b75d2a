"""決済の履歴 as CSV: the rows the page shows, every page of them, streamed.

Cells a spreadsheet would read as a formula (starting with =, +, -, @, a tab or a carriage
return) are prefixed with an apostrophe, so a plan or reason text can never run in the reader's
spreadsheet. The file starts with a byte-order mark: Excel then reads the Japanese as UTF-8.
"""
import csv
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.utils.translation import gettext as _

from billing.models import Payment
from billing.selectors import HistoryRow
from store.money import round_money

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str) -> str:
    return f"'{value}" if value.startswith(FORMULA_START) else value


class _Line:
    """csv.writer writes into this and the generator hands the line on."""

    def write(self, text: str) -> str:
        return text


def history_header() -> list[str]:
    return [_("Payment ID"), _("Date"), _("Amount (tax included)"), _("Currency"),
            _("Product"), _("Plan"), _("Billing cycle"), _("Paid for"), _("Card"), _("Status"),
            _("Reason"), _("Invoice")]


def history_row(payment: HistoryRow) -> list[str]:
    amount = round_money(payment.amount)
    texts = [payment.processor_id, payment.when, str(amount.currency),
             settings.KANRI_PRODUCT_NAME, payment.plan_label, payment.get_cycle_display(),
             payment.get_purpose_display(), payment.card_label, payment.get_outcome_display(),
             payment.reason if payment.state == Payment.State.FAILED else "",
             payment.invoice_number]
    safe = [spreadsheet_safe(str(text)) for text in texts]
    return [*safe[:2], str(amount.amount), *safe[2:]]  # the amount is ours: a plain number


def history_csv(payments: Iterable[HistoryRow]) -> Iterator[str]:
    """The rows (billing.selectors.payment_history_rows, on the organisation's clock)."""
    writer = csv.writer(_Line())
    yield "\ufeff" + writer.writerow(history_header())
    for payment in payments:
        yield writer.writerow(history_row(payment))
