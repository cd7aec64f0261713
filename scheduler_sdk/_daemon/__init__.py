"""Plumbing the daemons (master, agent, and the CLI's commands) share: flags that fall back to `AIOMESOS_*`
environment variables, structlog set-up, one daemon per work dir, a port that is really ours, a findable process
name, and one way for a daemon's `main` to end (a readable line and an exit code, never a traceback); and what
lets a daemon be watched: its HTTP port (`http`), Prometheus metrics (`prometheus`, `durations`), gRPC health and
reflection (`grpc_health`).

Private to aiomesos: framework authors import `scheduler_sdk`, not this. The daemons import it so that neither
takes its plumbing from the other or from the CLI."""
