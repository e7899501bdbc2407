"""The one runtime that follows the log, for every downstream process.

Projections (read models) and subscribers with effects outside the database (the
ComfyUI adapter) follow the log the same way:

- `checkpoints`: one row per follower in `follower_checkpoints`, and the per-follower
  lock that lets one process apply a follower's batch at a time;
- `decoding`: records to typed events, stopping at the first type this version does
  not know (a newer writer's) instead of skipping it;
- `batch`: one batch in one transaction (read, apply, move the checkpoints, commit);
- `worker`: the loop: LISTEN wake-ups, polling, backoff, held-back and blocked states;
- `status`: where each follower is, how far behind, and whether it is blocked.
"""
