"""The catalog Kanri ships with; applied by a data migration and by `manage.py seed_catalog`.

Idempotent: plans and add-ons are matched on `code`; a price is only added where that item has
no price yet for that cycle and currency, so prices edited (versioned) by staff are never touched.
Amounts are per user (plans) or per unit (add-ons) for the whole cycle: yearly is 12 months.
"""
import datetime as dt
from decimal import Decimal

GB = 1024

PLANS = [
    # code, English, Japanese, rank, users, records, storage per org MB, per licence MB, features
    ("free", "Free", "無料", 0, 3, 1_000, 1 * GB, 0, ["contacts", "deals"]),
    ("standard", "Standard", "スタンダード", 1, None, 10_000, 1 * GB, 512,
     ["contacts", "deals", "workflow", "mass_email"]),
    ("professional", "Professional", "プロフェッショナル", 2, None, 100_000, 1 * GB, 512,
     ["contacts", "deals", "workflow", "mass_email", "inventory", "validation_rules"]),
    ("enterprise", "Enterprise", "エンタープライズ", 3, None, 500_000, 1 * GB, 1 * GB,
     ["contacts", "deals", "workflow", "mass_email", "inventory", "validation_rules",
      "sandbox", "multi_currency"]),
    ("ultimate", "Ultimate", "アルティメット", 4, None, None, 1 * GB, 2 * GB,
     ["contacts", "deals", "workflow", "mass_email", "inventory", "validation_rules",
      "sandbox", "multi_currency", "analytics"]),
]

ADDONS = [
    # code, English, Japanese, rank, unit (en), unit (ja), storage MB per unit
    ("storage", "Extra storage", "追加ストレージ", 1, "1 GB", "1GB", 1 * GB),
    ("team_user", "Team user licence", "チームユーザーライセンス", 2, "1 user", "1ユーザー", 0),
    ("backup", "Data backup", "データバックアップ", 3, "1 backup", "1回", 0),
]

# (monthly, yearly) per currency. Yearly is cheaper than twelve months.
PRICES = {
    ("plan", "free"): {"JPY": ("0", "0"), "USD": ("0", "0")},
    ("plan", "standard"): {"JPY": ("2040", "20160"), "USD": ("20", "168")},
    ("plan", "professional"): {"JPY": ("3360", "33120"), "USD": ("35", "276")},
    ("plan", "enterprise"): {"JPY": ("5760", "57600"), "USD": ("50", "480")},
    ("plan", "ultimate"): {"JPY": ("7440", "74880"), "USD": ("65", "624")},
    ("addon", "storage"): {"JPY": ("600", "6000"), "USD": ("4", "40")},
    ("addon", "team_user"): {"JPY": ("1200", "12000"), "USD": ("10", "96")},
    ("addon", "backup"): {"JPY": ("1200", "12000"), "USD": ("10", "100")},
}


# The shipped prices hold from a fixed moment in the past, not from whenever seeding ran: a
# catalog seeded while a test (or a demo) has travelled in time must still price every date.
SHIPPED_FROM = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def seed_catalog(Plan, AddOn, Price) -> int:
    """Create or refresh the shipped catalog; returns how many prices were added."""
    items = {}
    for code, name, name_ja, rank, users, records, per_org, per_licence, features in PLANS:
        items[("plan", code)], _ = Plan.objects.update_or_create(
            code=code,
            defaults=dict(name=name, name_ja=name_ja, rank=rank, max_users=users,
                          max_records=records, storage_per_org_mb=per_org,
                          storage_per_licence_mb=per_licence, features=features),
        )
    for code, name, name_ja, rank, unit, unit_ja, storage_mb in ADDONS:
        items[("addon", code)], _ = AddOn.objects.update_or_create(
            code=code,
            defaults=dict(name=name, name_ja=name_ja, rank=rank, unit_name=unit,
                          unit_name_ja=unit_ja, storage_mb_per_unit=storage_mb),
        )
    added = 0
    for (kind, code), by_currency in PRICES.items():
        item = items[(kind, code)]
        for currency, amounts in by_currency.items():
            for cycle, amount in zip(("monthly", "yearly"), amounts, strict=True):
                lookup = {kind: item, "cycle": cycle, "amount_currency": currency}
                if not Price.objects.filter(**lookup).exists():
                    Price.objects.create(**lookup, amount=Decimal(amount),
                                         effective_from=SHIPPED_FROM)
                    added += 1
    return added
