"""Billing states of wallets (healthy, low_balance, depleted), recorded as events by a
follower of the log; see docs/WEBHOOKS.md."""
