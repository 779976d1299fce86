"""`parity pool start|status|stop`: one set of framework workers for a script's many `parity` commands."""

from __future__ import annotations

import os
import shlex

from parity.contracts.errors import UsageError
from parity.execution.pool_limits import MAX_CHECKS, MAX_IDLE, MAX_RSS_BYTES, MAX_TEMPLATES, SOCKET_ENV


def add(sub) -> None:
    p = sub.add_parser("pool", help="keep framework workers between the parity commands of a script",
                       description="Start a server that keeps one worker per framework and environment "
                                   f"between checks. Commands whose environment has {SOCKET_ENV} borrow its "
                                   "workers: imports are paid once, not per check. "
                                   'Typical: eval "$(parity pool start)"; trap "parity pool stop" EXIT; '
                                   "parity check A; parity check B")
    p.add_argument("action", choices=["start", "status", "stop"])
    p.add_argument("--socket", help=f"the server's Unix socket (start: a new temporary one; status and stop: "
                                    f"${SOCKET_ENV})")
    p.add_argument("--max-checks", type=int, default=MAX_CHECKS,
                   help=f"checks one worker serves before a fresh process replaces it (default {MAX_CHECKS})")
    p.add_argument("--max-rss", type=int, default=MAX_RSS_BYTES >> 20, metavar="MIB",
                   help=f"resident memory above which an idle worker is replaced (default {MAX_RSS_BYTES >> 20})")
    p.add_argument("--max-idle", type=int, default=MAX_IDLE,
                   help=f"idle workers kept at once; the least recently used beyond it stops (default {MAX_IDLE})")
    p.add_argument("--max-templates", type=int, default=MAX_TEMPLATES,
                   help="processes kept with a framework imported, that fork its new workers in milliseconds "
                        f"instead of starting an interpreter (Linux; default {MAX_TEMPLATES}, 0: none)")
    p.set_defaults(func=run)


def run(args) -> int:
    from parity.execution import pool_client

    if args.action == "start":
        path = pool_client.start(args.socket, max_checks=args.max_checks, max_rss_bytes=args.max_rss << 20,
                                 max_idle=args.max_idle, max_templates=args.max_templates)
        print(f"export {SOCKET_ENV}={shlex.quote(path)}")
        return 0
    path = args.socket or os.environ.get(SOCKET_ENV)
    if not path:
        raise UsageError(f"no pool named: {SOCKET_ENV} is not set", "pass --socket PATH")
    if args.action == "stop":
        pool_client.stop(path)
        print(f"stopped the parity pool at {path}")
        return 0
    status = pool_client.SharedPool(path)
    try:
        info = status.call("status")
    finally:
        status.close()
    s = info["settings"]
    print(f"parity pool at {path} (pid {info['pid']}): {info['clients'] - 1} other client(s), {info['lent']} "
          f"worker(s) at work, {len(info['idle'])} idle, {info['started']} started so far ({info['forked']} "
          f"forked from {len(info['templates'])} template(s)); limits: {s['max_checks']} checks, "
          f"{s['max_rss_bytes'] >> 20} MiB, {s['max_idle']} idle, {s['max_templates']} templates")
    for w in info["idle"]:
        rss = f"{w['rss_bytes'] >> 20} MiB" if w["rss_bytes"] else "?"
        print(f"  {w['framework']:<12} pid {w['pid']:<8} {w['checks']:>3} check(s)  {rss:>9}  {w['python']}")
    for t in info["templates"]:
        rss = f"{t['rss_bytes'] >> 20} MiB" if t["rss_bytes"] else "?"
        print(f"  {t['framework']:<12} pid {t['pid']:<8} template      {rss:>9}  {t['python']}")
    for n in info.get("not_forked", []):
        print(f"  {n['framework']:<12} new interpreters: {n['why']}")
    return 0
