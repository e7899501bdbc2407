"""Outbound webhooks (Standard Webhooks): endpoints, the outbox the log fills, the
sender that delivers it at least once. See docs/WEBHOOKS.md."""
