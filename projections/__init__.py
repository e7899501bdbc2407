"""Read models computed from the event log (issue 3)."""
