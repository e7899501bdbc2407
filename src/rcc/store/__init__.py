"""PostgreSQL: the event store, migrations, the embedded server and the unit of work."""
