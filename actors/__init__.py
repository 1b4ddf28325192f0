"""thespian-otp's workloads: the actors that prove the supervision core on real work.

The limiter, job workers and completer, and projector live here, each as a pure core, a thin
actor and (for PostgreSQL-backed state) a store under `actors.stores`. `actors.cli` is the
`thespian-otp` command.
"""
