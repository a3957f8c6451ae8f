"""Hostile SQL against the natural-language-to-SQL expert: how many inputs were tried and refused cleanly.

Runs every entry of ``tests/sql_hostile.py`` through :class:`experts.text_to_sql.SQLExpert`
on a writable copy of the bundled Chinook database (SQLite) and, when
``MRKL_TEST_POSTGRES_URL`` is set, on a scratch database of that PostgreSQL server; checks
that the rows of every table are unchanged afterwards, and prints a table.

"Refused cleanly" means the expert raised its ``ExpertError`` (a guard refusal, or the
statement timeout for the reads that never finish) within 5 seconds, and nothing changed.

    python benchmarks/sql_hostile.py [--timeout 1.0]

Not run by CI (the tests assert the same per input).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from experts.database import CHINOOK_PATH  # noqa: E402
from experts.sql_guard import SQLRefusedError  # noqa: E402
from experts.text_to_sql import SQLExpert  # noqa: E402
from mrkl.errors import ExpertError  # noqa: E402
from sql_hostile import for_dialect  # noqa: E402


def _sqlite_snapshot(path: Path) -> dict[str, str]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [r[0] for r in con.execute("select name from sqlite_master where type = 'table' order by name")]
        return {t: hashlib.sha256(repr(con.execute(f'select * from "{t}" order by rowid').fetchall()).encode())
                .hexdigest() for t in names}
    finally:
        con.close()


def _pg_snapshot(url: str) -> dict[str, str]:
    import sqlalchemy as sa

    eng = sa.create_engine(url)
    with eng.connect() as conn:
        tables = [r[0] for r in conn.exec_driver_sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        out = {t: conn.exec_driver_sql(f'SELECT md5(coalesce(string_agg(x::text, \'|\' ORDER BY x::text), \'\')) '
                                       f'FROM "{t}" x').scalar() for t in sorted(tables)}
    eng.dispose()
    return out


def _run(ex: SQLExpert, dialect: str, names: dict[str, str], evil: Path) -> tuple[Counter, list[str]]:
    counts: Counter = Counter()
    problems = []
    for h in for_dialect(dialect):
        counts["tried"] += 1
        t0 = time.perf_counter()
        try:
            ex.run({"sql": h.render(evil=evil, **names)})
        except SQLRefusedError:
            counts["refused by the guard"] += 1
        except ExpertError as exc:
            key = "stopped by the timeout" if "timed out" in str(exc) else "database error"
            counts[key] += 1
        except Exception as exc:  # noqa: BLE001 - a crash is what we count here
            counts["crashed"] += 1
            problems.append(f"{h.label}: {type(exc).__name__}: {exc}")
            continue
        else:
            counts["ran"] += 1
            problems.append(f"{h.label}: ran")
            continue
        if time.perf_counter() - t0 > 5:
            counts["slow"] += 1
            problems.append(f"{h.label}: took {time.perf_counter() - t0:.1f} s")
        else:
            counts["refused cleanly"] += 1
    return counts, problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=1.0, help="statement timeout in seconds")
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    rows = []
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "chinook.sqlite"
        shutil.copyfile(CHINOOK_PATH, copy)
        before = _sqlite_snapshot(copy)
        ex = SQLExpert(f"sqlite:///{copy}", timeout_s=args.timeout, sample_values=0)
        counts, problems = _run(ex, "sqlite", {"t": "Genre", "c": "Name", "big": "Track"}, Path(tmp) / "evil")
        ex.close()
        unchanged = _sqlite_snapshot(copy) == before and not (Path(tmp) / "evil").exists()
        rows.append(("SQLite (Chinook copy)", counts, unchanged, problems))

    pg_url = os.environ.get("MRKL_TEST_POSTGRES_URL")
    if pg_url:
        import sqlalchemy as sa

        name = f"mrkl_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = sa.engine.make_url(pg_url).set(database=name).render_as_string(hide_password=False)
        owner = sa.create_engine(url)
        with owner.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE books (book_id int PRIMARY KEY, title text NOT NULL); "
                "CREATE TABLE sales (sale_id int PRIMARY KEY, book_id int REFERENCES books); "
                "INSERT INTO books SELECT g, 'book ' || g FROM generate_series(1, 400) g; "
                "INSERT INTO sales SELECT g, g FROM generate_series(1, 400) g;")
        owner.dispose()
        try:
            before = _pg_snapshot(url)
            ex = SQLExpert(url, timeout_s=args.timeout, sample_values=0)
            with tempfile.TemporaryDirectory() as tmp:
                counts, problems = _run(ex, "postgres", {"t": "books", "c": "title", "big": "sales"},
                                        Path(tmp) / "evil")
                unchanged = _pg_snapshot(url) == before and not (Path(tmp) / "evil").exists()
            ex.close()
            rows.append(("PostgreSQL (scratch database)", counts, unchanged, problems))
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            admin.dispose()

    table = Table(title="Hostile SQL through the sql expert")
    for col in ("database", "tried", "refused by the guard", "stopped by the timeout", "refused cleanly",
                "ran / crashed / slow", "rows unchanged"):
        table.add_column(col)
    for db, c, unchanged, problems in rows:
        table.add_row(db, str(c["tried"]), str(c["refused by the guard"]), str(c["stopped by the timeout"]),
                      str(c["refused cleanly"]), f"{c['ran']} / {c['crashed']} / {c['slow']}",
                      "yes" if unchanged else "NO")
        ok = ok and unchanged and c["refused cleanly"] == c["tried"]
    Console(width=120).print(table)
    if not pg_url:
        print("PostgreSQL left out: set MRKL_TEST_POSTGRES_URL to include it.")
    for db, _, _, problems in rows:
        for p in problems:
            print(f"{db}: {p}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
