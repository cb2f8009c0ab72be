"""The notice job with the day passed in: drafts on the 1st, redrafts until published, flags late villages."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import psycopg
import pytest

from server.subsidy import jobs, repository, service
from server.subsidy.cli import main
from server.subsidy.records import Month

from .conftest import POLICY_YAML
from .dbcounty import build, commit

pytestmark = pytest.mark.integration

MAY = Month(2032, 5)


def test_drafted_on_the_first_and_flagged_after_the_tenth(tsdb_dsn: str) -> None:
    county = commit(tsdb_dsn, build(MAY, seed=11))
    ours = set(county.village_ids.values())
    qingxi = county.village_ids[f"青溪村{county.tag}"]
    with psycopg.connect(tsdb_dsn) as conn:
        service.add_policies(conn, POLICY_YAML, by="tests", at=datetime.now(UTC))
        conn.commit()

        before = jobs.daily(conn, date(2032, 5, 31))  # last month's (April's) work: nothing of ours
        assert not ours & set(before.drafted)
        first = jobs.daily(conn, date(2032, 6, 1))
        conn.commit()
        assert first.month == MAY and ours <= set(first.drafted) and not ours & set(first.overdue)
        html = repository.notice_html(conn, MAY, qingxi)
        assert html is not None and "青溪村" in html and "2032年6月10日" in html

        assert repository.publish_notice(conn, MAY, qingxi, date(2032, 6, 8), "village")
        conn.commit()
        again = jobs.daily(conn, date(2032, 6, 5))
        assert qingxi in again.kept_published and (ours - {qingxi}) <= set(again.drafted)

        late = jobs.daily(conn, date(2032, 6, 11))
        conn.commit()
        assert late.drafted == [] and set(late.overdue) >= ours - {qingxi} and qingxi not in late.overdue

    out = io.StringIO()
    assert main(["--dsn", tsdb_dsn, "notices-daily", "--today", "2032-06-11"], stdout=out, stderr=io.StringIO()) == 0
    assert out.getvalue().startswith("2032-05: drafted 0") and str(sorted(ours - {qingxi})[0]) in out.getvalue()
