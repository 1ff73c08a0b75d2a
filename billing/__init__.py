"""Subscriptions, quotes, invoices, payments, dunning and the payment processor client."""
