"""The projector: keeps the read models of `projections/` current.

- `model`: what a projection is (name, tables, handlers, flush) — a follower of the log;
- `runtime`: `ProjectorWorker`, the follower runtime (rcc.follower) run for projections;
- `replay`: rebuilding read models beside the live ones and swapping them in;
- `wait`: read-your-writes for the portal;
- `service`: the projector inside `rcc serve`.

The projections themselves are handed in by the composition root (rcc/cli.py); this
package never imports them.
"""
