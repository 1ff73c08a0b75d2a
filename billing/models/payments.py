"""Cards on file (processor ids and display facts only) and payment attempts."""
from functools import lru_cache

from django.db import models
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from accounts.models import Organisation
from billing.models.invoices import Invoice
from billing.models.lines import money_field
from billing.models.quotes import Quote
from store import clock
from store.models import BillingCycle

BRANDS = {"visa": "Visa", "mastercard": "Mastercard", "amex": "American Express", "jcb": "JCB",
          "diners": "Diners Club", "discover": "Discover", "unionpay": "UnionPay"}


class PaymentMethod(models.Model):
    """A card as the processor describes it. The card number never reaches Kanri."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE,
                                     related_name="payment_methods")
    processor_id = models.CharField(max_length=64, unique=True)
    brand = models.CharField(max_length=20)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(default=clock.now)

    def __str__(self) -> str:
        return f"{self.brand_label} •••• {self.last4} ({self.exp_month:02d}/{self.exp_year})"

    @property
    def brand_label(self) -> str:
        return BRANDS.get(self.brand, self.brand.title())


class PaymentDisplay:
    """How an attempt reads in the payment history (page and CSV), from its own columns and
    three facts its related rows give: `plan_changed`, `plan_label`, `cycle`. Shared by the
    model and by the history page's rows, which are read as plain values
    (billing.selectors.HistoryRow)."""

    @property
    def attempt_number(self) -> int:
        """The attempt's number on its invoice (renewal keys end in ":attempt:N"), else 1."""
        head, _sep, number = self.idempotency_key.rpartition(":attempt:")
        return int(number) if head and number.isdigit() else 1

    @property
    def purpose(self) -> str:
        if self.quote_id:
            return Payment.Purpose.PLAN_CHANGE if self.plan_changed else Payment.Purpose.LICENCES
        return Payment.Purpose.RETRY if self.attempt_number > 1 else Payment.Purpose.RENEWAL

    def reading_language(self) -> str:
        """The language the labels are read in: the active one (a history row knows its own)."""
        return get_language()

    def get_purpose_display(self) -> str:
        return _label("purpose", self.purpose, self.reading_language())

    def get_cycle_display(self) -> str:
        return _label("cycle", self.cycle, self.reading_language()) if self.cycle else ""

    @property
    def outcome(self) -> str:
        """paid, credit, failed, refunded or pending: the history's status filter's names."""
        if self.state == Payment.State.SUCCEEDED:
            return "credit" if self.paid_with == Payment.Source.CREDIT else "paid"
        if self.state in Payment.OPEN:
            return "pending"
        return self.state

    def get_outcome_display(self) -> str:
        return _label("outcome", self.outcome, self.reading_language())

    @property
    def reason(self) -> str:
        """Why it failed, in the reader's language (the stored text is the language of the
        moment it failed)."""
        from billing.declines import failure_message

        return failure_message(self.failure_code, self.failure_reason)

    @property
    def card_label(self) -> str:
        if self.paid_with == Payment.Source.CREDIT or not self.card_last4:
            return ""
        return f"{BRANDS.get(self.card_brand, self.card_brand.title())} •••• {self.card_last4}"


class PaymentQuerySet(models.QuerySet):
    def open(self):
        """Attempts whose outcome is not settled yet: at most one per organisation (a
        constraint), and while it lasts nothing else may change what it pays for."""
        return self.filter(state__in=Payment.OPEN)

    def open_for(self, organisation_id: int):
        return self.open().filter(organisation_id=organisation_id)


class Payment(PaymentDisplay, models.Model):
    """One attempt to charge, in three steps (billing.services.charging): committed with its
    idempotency key, amount and card before the processor is called; the PaymentIntent's id
    stored as soon as the processor hands it out; the answer recorded afterwards.

    `pending` and `processing` are open: the outcome is not settled, and at most one attempt
    per organisation may be open. The lease says which request is talking to the processor
    about it right now; once it runs out, anyone may settle the attempt by asking the processor.
    """

    class State(models.TextChoices):
        PENDING = "pending", _("Pending")
        PROCESSING = "processing", _("Processing")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        REFUNDED = "refunded", _("Refunded")

    class Source(models.TextChoices):
        CARD = "card", _("Card")
        CREDIT = "credit", _("Account credit")  # an invoice paid wholly by credit: no charge

    class Purpose(models.TextChoices):  # what an attempt paid for; derived, not stored
        PLAN_CHANGE = "plan_change", _("Plan change")
        LICENCES = "licences", _("Users and add-ons")
        RENEWAL = "renewal", _("Renewal")
        RETRY = "retry", _("Renewal retry")

    OPEN = (State.PENDING, State.PROCESSING)

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT,
                                     related_name="payments")
    quote = models.ForeignKey(Quote, null=True, on_delete=models.PROTECT,
                              related_name="payments")
    invoice = models.ForeignKey(Invoice, null=True, on_delete=models.PROTECT,
                                related_name="payments")
    idempotency_key = models.CharField(max_length=80, unique=True)
    processor_id = models.CharField(max_length=64, blank=True,
                                    help_text=_("The PaymentIntent, stored before confirming."))
    amount = money_field()
    paid_with = models.CharField(max_length=10, choices=Source.choices, default=Source.CARD)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    # The card this attempt was made with: a re-send never switches cards.
    card_processor_id = models.CharField(max_length=64, blank=True)
    card_brand = models.CharField(max_length=20, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    failure_code = models.CharField(max_length=60, blank=True)
    failure_reason = models.CharField(max_length=300, blank=True)
    lease_token = models.UUIDField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    refund_id = models.CharField(max_length=64, blank=True)  # the latest Refund
    # What support staff refunded of it so far (None: nothing); state `refunded` once it is all.
    amount_refunded = money_field(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.now)
    settled_at = models.DateTimeField(null=True, blank=True)

    objects = PaymentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organisation", "-created_at", "-id"],
                                name="payment_history")]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation"], condition=models.Q(state__in=["pending", "processing"]),
                name="one_open_payment_per_organisation"),
        ]
        permissions = [("support_refund", _("Can refund a card payment (support)"))]

    def __str__(self) -> str:
        return f"{self.idempotency_key} {self.amount} {self.state}"

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN

    # What a payment's own page prints (PaymentDisplay, with these from the related rows:
    # billing.selectors.payment_get selects the invoice, the quote and its plan; the history's
    # rows read the same as values, selectors.HistoryRow).

    @property
    def plan_changed(self) -> bool:
        quote = self.quote
        return quote.plan_id != quote.from_plan_id or quote.cycle != quote.from_cycle

    @property
    def plan_label(self) -> str:
        """The plan as the invoice named it, else as the quote offered it."""
        if self.invoice_id:
            return self.invoice.display_plan_name
        return self.quote.plan.display_name if self.quote_id else ""

    @property
    def cycle(self) -> str:
        if self.quote_id:
            return self.quote.cycle
        return self.invoice.cycle if self.invoice_id else ""


@lru_cache(maxsize=64)
def _label(kind: str, value: str, language: str | None) -> str:
    """A history label as a str in `language`: made once per process and language (a page of
    the history prints a few of them on every row)."""
    labels = {"purpose": Payment.Purpose, "cycle": BillingCycle}
    return str(OUTCOMES[value] if kind == "outcome" else labels[kind](value).label)


OUTCOMES = {"paid": _("Paid"), "credit": _("Paid by account credit"), "failed": _("Failed"),
            "refunded": _("Refunded"), "pending": _("Being confirmed")}
