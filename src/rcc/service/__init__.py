"""Commands and their handlers: load state, decide, append in one transaction."""
