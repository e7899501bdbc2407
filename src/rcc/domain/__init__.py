"""The pure core: events, aggregate state and decisions. No I/O here."""
