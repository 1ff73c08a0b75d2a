"""The audit trail: one append-only row per change, written in the change's transaction."""
from accounts.models import ActorKind, AuditEvent, Organisation, User


def actor_kind_of(actor: User | None) -> str:
    if actor is None:
        return ActorKind.SYSTEM
    return ActorKind.STAFF if actor.is_staff and actor.organisation_id is None else ActorKind.USER


def audit_record(*, organisation: Organisation | None, actor: User | None, action: str,
                 target, before: dict | None = None, after: dict | None = None,
                 reason: str = "", actor_kind: str | None = None) -> AuditEvent:
    """Append one audit row; call inside the transaction that makes the change."""
    return AuditEvent.objects.create(
        organisation=organisation,
        actor=actor,
        actor_kind=actor_kind or actor_kind_of(actor),
        actor_label=actor.email if actor else "system",
        action=action,
        target_type=target._meta.label_lower,
        target_id=str(target.pk),
        before=before or {},
        after=after or {},
        reason=reason,
    )
