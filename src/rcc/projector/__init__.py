"""The projector runtime: follows the log and keeps the read models of `projections/`.

- `model`: what a projection is (name, tables, handlers, flush);
- `checkpoints`: per-projection checkpoints and the lock that lets one process apply
  a projection at a time;
- `runtime`: one batch in one transaction, and the worker that loops over batches;
- `replay`: rebuilding read models beside the live ones and swapping them in;
- `status` and `wait`: lag for operators, read-your-writes for the portal.
"""
