"""RCC: Ranch Cloud Credits, an event-sourced credit ledger for GPU SaaS."""

__version__ = "0.1.0"
