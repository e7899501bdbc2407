"""Adapters to the world outside the ledger: Stripe's API and its events."""
