"""The SQL experts against a real PostgreSQL server (./run test starts one on 127.0.0.1).

The server comes from ``MRKL_TEST_POSTGRES_URL`` (a SQLAlchemy URL of a superuser, e.g.
``postgresql+psycopg://postgres@127.0.0.1:5433/postgres``). Each test module run creates its
own database with a small bookshop schema, and drops it afterwards.

Without the URL these tests skip, unless ``MRKL_REQUIRE_POSTGRES`` is set (``./run test`` sets it):
then they fail, so CI never passes with the PostgreSQL checks left out.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from experts.database import DatabaseExpert
from experts.sql_guard import SQLRefusedError
from experts.text_to_sql import SQLExpert
from mrkl.errors import ExpertError
from sql_hostile import for_dialect

PG_URL = os.environ.get("MRKL_TEST_POSTGRES_URL", "")
REQUIRED = bool(os.environ.get("MRKL_REQUIRE_POSTGRES"))

_SCHEMA = """
CREATE TABLE authors (
    author_id integer PRIMARY KEY,
    name text NOT NULL,
    country text NOT NULL
);
CREATE TABLE books (
    book_id integer PRIMARY KEY,
    title text NOT NULL,
    author_id integer NOT NULL REFERENCES authors (author_id),
    published date NOT NULL,
    price numeric(6, 2) NOT NULL
);
CREATE TABLE sales (
    sale_id integer PRIMARY KEY,
    book_id integer NOT NULL REFERENCES books (book_id),
    sold_on date NOT NULL,
    quantity integer NOT NULL
);
CREATE SEQUENCE evil_seq;
INSERT INTO authors VALUES
    (1, 'Ursula K. Le Guin', 'USA'), (2, 'Stanisław Lem', 'Poland'), (3, 'Octavia E. Butler', 'USA'),
    (4, 'Liu Cixin', 'China'), (5, 'Nobody Yet', 'Iceland');
INSERT INTO books VALUES
    (1, 'A Wizard of Earthsea', 1, '1968-11-01', 9.99), (2, 'The Left Hand of Darkness', 1, '1969-03-01', 12.50),
    (3, 'The Dispossessed', 1, '1974-05-01', 11.00), (4, 'Solaris', 2, '1961-06-01', 10.00),
    (5, 'The Cyberiad', 2, '1965-01-01', 8.75), (6, 'Kindred', 3, '1979-06-01', 13.25),
    (7, 'Parable of the Sower', 3, '1993-10-01', 14.00), (8, 'The Three-Body Problem', 4, '2008-05-01', 15.99);
-- 400 sales: enough rows for a cartesian product that never ends
INSERT INTO sales
SELECT g, 1 + (g * 7) % 8, DATE '2024-01-01' + (g % 365), 1 + g % 3 FROM generate_series(1, 400) AS g;
"""
_TABLES = ("authors", "books", "sales")


def _sa():
    import sqlalchemy

    return sqlalchemy


@pytest.fixture(scope="module")
def pg_url():
    """URL of a fresh database with the bookshop schema on the test server; dropped afterwards."""
    if not PG_URL:
        msg = "no PostgreSQL server: set MRKL_TEST_POSTGRES_URL (./run test starts one)"
        if REQUIRED:
            pytest.fail(f"MRKL_REQUIRE_POSTGRES is set but there is {msg}")
        pytest.skip(msg)
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the test extras install it
        pytest.fail(f"psycopg is not installed ({exc}); install the test extras: pip install -e '.[test]'")
    sa = _sa()
    name = f"mrkl_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(PG_URL).set(database=name)
    owner = sa.create_engine(url)
    with owner.begin() as conn:
        conn.exec_driver_sql(_SCHEMA, execution_options={"no_parameters": True})
    owner.dispose()
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()


def _snapshot(url: str) -> dict[str, tuple[int, str]]:
    """Row count and md5 of all rows of each table in the public schema, with the owner's own connection."""
    sa = _sa()
    eng = sa.create_engine(url)
    try:
        with eng.connect() as conn:
            tables = [r[0] for r in conn.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
            out = {}
            for t in tables:
                n, digest = conn.exec_driver_sql(
                    f'SELECT count(*), md5(coalesce(string_agg(x::text, \'|\' ORDER BY x::text), \'\')) FROM "{t}" x'
                ).one()
                out[t] = (n, digest)
            out["evil_seq"] = (conn.exec_driver_sql("SELECT last_value FROM evil_seq").scalar(), "")
            return out
    finally:
        eng.dispose()


@pytest.fixture(scope="module")
def shop(pg_url):
    ex = SQLExpert(pg_url, name="bookshop", timeout_s=1.0)
    yield ex
    ex.close()


def test_schema_is_introspected(shop):
    assert shop.dialect == "postgres"
    d = shop.description
    assert d.startswith("Writes one SQL query over the database with tables authors, books, sales.")
    assert "Dialect: PostgreSQL." in d
    assert "books(book_id INTEGER primary key, title TEXT e.g. 'A Wizard of Earthsea', 'Kindred', " \
           "'Parable of the Sower', author_id INTEGER → authors.author_id, " \
           "published DATE 1961-06-01..2008-05-01, price NUMERIC(6, 2) 8.75..15.99)" in d
    assert "country TEXT e.g. 'USA', 'China', 'Iceland'" in d
    assert shop.examples == []
    assert sorted(shop.guard.schema) == list(_TABLES)


def test_questions_answered_with_sql(shop):
    res = shop.run({"sql": "SELECT a.name, sum(s.quantity) AS copies FROM authors a JOIN books b USING (author_id) "
                           "JOIN sales s USING (book_id) GROUP BY a.name ORDER BY copies DESC"})
    assert [r["name"] for r in res.value] == ["Ursula K. Le Guin", "Octavia E. Butler", "Stanisław Lem", "Liu Cixin"]
    assert sum(r["copies"] for r in res.value) == sum(1 + g % 3 for g in range(1, 401))
    res = shop.run({"sql": "SELECT name FROM authors WHERE author_id NOT IN (SELECT author_id FROM books)"})
    assert res.value == "Nobody Yet" and res.sources == ["database:authors", "database:books"]
    res = shop.run({"sql": "SELECT title FROM books WHERE price > (SELECT avg(price) FROM books) ORDER BY title"})
    assert [r["title"] for r in res.value] == ["Kindred", "Parable of the Sower", "The Left Hand of Darkness",
                                               "The Three-Body Problem"]
    res = shop.run({"sql": "SELECT extract(year FROM published)::int AS y, count(*) FROM books "
                           "WHERE title ILIKE '%the%' GROUP BY y ORDER BY y"})
    assert res.data["rows"] == [[1965, 1], [1969, 1], [1974, 1], [1993, 1], [2008, 1]]
    assert res.data["sql"].endswith("LIMIT 1001")
    res = shop.run({"sql": "SELECT title FROM books WHERE price > 10 AND author_id = 1 OR title = 'Solaris' "
                           "ORDER BY title"})
    assert [r["title"] for r in res.value] == ["Solaris", "The Dispossessed", "The Left Hand of Darkness"]
    # a '%' in a literal goes to the driver untouched (no parameter formatting)
    assert shop.run({"sql": "SELECT count(*) FROM books WHERE title LIKE '%of%'"}).value == 3


def test_hostile_corpus_is_refused_and_changes_nothing(pg_url, shop, tmp_path):
    before = _snapshot(pg_url)
    assert before["books"][0] == 8 and before["sales"][0] == 400 and before["authors"][0] == 5
    evil = tmp_path / "evil.csv"
    hostile = for_dialect("postgres")
    refused = 0
    for h in hostile:
        text = h.render(t="books", c="title", big="sales", evil=evil)
        t0 = time.perf_counter()
        with pytest.raises(ExpertError) as e:
            shop.run({"sql": text})
        assert time.perf_counter() - t0 < 5, h.label
        if h.expect == "timeout":
            assert str(e.value) == "query timed out after 1 s", (h.label, e.value)
        else:
            assert isinstance(e.value, SQLRefusedError) and str(e.value).startswith("refused: "), (h.label, e.value)
        refused += 1
    assert refused == len(hostile) >= 65
    assert _snapshot(pg_url) == before
    assert not evil.exists() and not Path("/tmp/evil.so").exists()


def test_quoting_tricks_run_as_plain_reads(pg_url, shop):
    """Text that only looks like a second statement is a string literal: it runs, as a read, and matches nothing."""
    before = _snapshot(pg_url)
    res = shop.run({"sql": "SELECT title FROM books WHERE title = E'x\\'; DELETE FROM books; --'"})
    assert res.value == [] and res.data["sql"].startswith("SELECT title FROM books WHERE title = e'x''; DELETE")
    res = shop.run({"sql": "SELECT $tag$'; DELETE FROM books; --$tag$ AS s FROM books LIMIT 1"})
    assert res.value == "'; DELETE FROM books; --"
    assert _snapshot(pg_url) == before


def test_pg_sleep_beyond_the_timeout_is_stopped_by_the_server(pg_url):
    """The statement timeout for real: pg_sleep allowed on purpose, the server cancels it."""
    ex = SQLExpert(pg_url, timeout_s=0.5, extra_functions={"pg_sleep"}, sample_values=0)
    t0 = time.perf_counter()
    with pytest.raises(ExpertError, match=r"^query timed out after 0.5 s$"):
        ex.run({"sql": "SELECT pg_sleep(5)"})
    elapsed = time.perf_counter() - t0
    assert 0.4 < elapsed < 3, elapsed
    assert ex.run({"sql": "SELECT 1 AS done FROM (SELECT pg_sleep(0.05)) AS s"}).value == 1  # under the timeout: runs
    assert ex.run({"sql": "SELECT count(*) FROM books"}).value == 8  # the pool's connection is still usable
    ex.close()


def test_the_session_refuses_writes_without_the_guard(pg_url):
    """Second layer: SQL that skips the guard still cannot write (read-only session and transaction)."""
    ex = SQLExpert(pg_url, sample_values=0)
    before = _snapshot(pg_url)
    for stmt in ("DELETE FROM sales", "UPDATE books SET price = 0", "CREATE TABLE evil (x int)",
                 "WITH d AS (DELETE FROM books RETURNING 1) SELECT count(*) FROM d", "SELECT nextval('evil_seq')"):
        with pytest.raises(ExpertError, match="database error: cannot execute .* in a read-only transaction"):
            ex.fetch(stmt, 10)
    # even a session that switches the default off stays read-only: SET TRANSACTION READ ONLY per transaction
    with pytest.raises(ExpertError, match="read-only transaction"):
        ex.fetch("SET SESSION default_transaction_read_only = off; DELETE FROM sales", 10)
    ex.close()
    assert _snapshot(pg_url) == before


def test_structured_database_expert_on_postgres(pg_url):
    db = DatabaseExpert(pg_url, name="bookshop_db", timeout_s=1.0)
    res = db.run(db.parse_args({"table": "books", "aggregate": "count", "where": {"authors.country": "usa"}}))
    assert res.value == 5
    res = db.run(db.parse_args({"table": "books", "columns": ["title"], "filters": [
        {"column": "published", "op": ">=", "value": "1975-01-01"}], "order_by": "published"}))
    assert [r["title"] for r in res.value] == ["Kindred", "Parable of the Sower", "The Three-Body Problem"]
    db.close()
