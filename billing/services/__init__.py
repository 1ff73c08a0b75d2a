"""Billing's writes: each a keyword-only verb on a noun, atomic and audited."""
