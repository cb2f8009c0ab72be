"""`yangyi-registry`: rosters from the command line.

    yangyi-registry publish-rosters [--point ID ...] [--pending]   rebuild and publish (retained)
    yangyi-registry roster --point ID                              print a point's roster JSON

publish-rosters rebuilds each roster (a new version only if its content changed) and publishes the
current version of every point asked for, retained, so agents that lost theirs (a broker that lost
its retained store) get it again; --pending sends only those whose last publish failed.
Exit codes: 0 done, 1 some rosters not acknowledged by the broker, 2 bad settings or usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from server.errors import ConfigError
from server.settings import load_settings

from . import elders_repository as repo
from . import roster

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="yangyi-registry", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log-level", default="INFO")
    sub = p.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish-rosters", help="rebuild and publish rosters (retained)")
    pub.add_argument("--point", action="append", default=[], help="only this point (repeatable)")
    pub.add_argument("--pending", action="store_true", help="only rosters whose last publish failed")
    show = sub.add_parser("roster", help="print a point's roster as JSON")
    show.add_argument("--point", required=True)
    return p


def main(argv: list[str] | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        dsn = settings.db.resolved_dsn()
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    tz = settings.api.timezone
    now = clock()
    with psycopg.connect(dsn) as conn:
        if args.command == "roster":
            if not repo.point_village(conn, args.point)[0]:
                print(f"no meal point {args.point!r}", file=sys.stderr)
                return 2
            one = roster.build(conn, args.point, now, tz)
            conn.commit()
            print(one.roster.to_bytes().decode())
            return 0
        points = args.point or (repo.unpublished_points(conn) if args.pending else repo.all_points(conn))
        unknown = [p for p in points if not repo.point_village(conn, p)[0]]
        if unknown:
            print(f"no meal point(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
        built = roster.rebuild(conn, points, now, tz)
        conn.commit()
        try:
            published = roster.publish_built(conn, roster.RosterPublisher(settings.mqtt),
                                             [b.roster for b in built.values()], now)
        except ConfigError as exc:
            log.error("%s", exc)
            return 2
    changed = sum(b.changed for b in built.values())
    print(f"{len(built)} rosters ({changed} new versions) {'published' if published else 'NOT all published'}")
    return 0 if published else 1


if __name__ == "__main__":
    raise SystemExit(main())
