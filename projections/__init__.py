"""Read models computed from the event log (issue 3).

One module per read model, each with its name, its tables, a handler per event type
and a flush that writes a whole batch at once (see src/rcc/projector/model.py):

- `balances`: one row per wallet (balance, lifetime granted and consumed, jobs in flight);
- `ledger`: the PRD's rcc_ledger, one line per ledger event;
- `jobs`: the PRD's jobs table;
- `payments`: the PRD's payments table;
- `users`: profile, balance, plan and last activity;
- `dashboard`: hourly counters behind the admin dashboard's KPIs;
- `ops_log`: the PRD's operations log;
- `models`: the model files (installed, downloading, failed), with its own query.

`queries` holds the reads the portal makes; `registry.ALL` lists every projection.
"""
