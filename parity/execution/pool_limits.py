"""A pool's limits and where a process finds its shared pool: read by the pool, its client and its server."""

from __future__ import annotations

from parity.contracts.errors import UsageError

MAX_CHECKS = 50               # checks one worker serves before it is replaced by a fresh process
MAX_RSS_BYTES = 4 << 30       # resident memory above which an idle worker is replaced
MAX_IDLE = 8                  # idle workers kept at once (each holds its frameworks' imports, 0.3-1 GiB)
MAX_TEMPLATES = 4             # a pool server's templates that fork workers (forkserver.py; each 0.3-0.9 GiB)
SOCKET_ENV = "PARITY_POOL_SOCKET"  # a shared pool's server (pool_server.py, reached through pool_client.py) for every check of this process


def check_limits(max_checks: int, max_rss_bytes: int, max_idle: int, max_templates: int = 0) -> None:
    if max_checks < 1 or max_rss_bytes < 1 or max_idle < 0 or max_templates < 0:
        raise UsageError(f"pool limits must be positive (max checks {max_checks}, max RSS {max_rss_bytes}, "
                         f"max idle {max_idle}, max templates {max_templates})",
                         "give at least 1 check and 1 byte, and 0 or more idle workers and templates")
