"""The natural-language-to-SQL expert and its guard, on SQLite (the bundled Chinook and copies of it)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import time

import pytest

from conftest import ScriptedBackend, card_scorer
from experts import builtin_experts
from experts.database import CHINOOK_PATH
from experts.sql_guard import SAFE_FUNCTIONS, SQLGuard, SQLRefusedError
from experts.text_to_sql import CHINOOK_SQL_EXAMPLES, SQLArgs, SQLExpert
from mrkl import FALLBACK, MRKL
from mrkl.errors import ArgumentError, ExpertError
from router import LLMRouter
from sql_hostile import for_dialect

_TABLES = ["Album", "Artist", "Customer", "Employee", "Genre", "Invoice", "InvoiceLine", "MediaType",
           "Playlist", "PlaylistTrack", "Track"]
_COUNTS = {"Album": 347, "Artist": 275, "Customer": 59, "Employee": 8, "Genre": 25, "Invoice": 412,
           "InvoiceLine": 2240, "MediaType": 5, "Playlist": 18, "PlaylistTrack": 8715, "Track": 3503}


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(path) -> dict[str, tuple[int, str]]:
    """Row count and a checksum of every row of every table, read with plain sqlite3."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [r[0] for r in con.execute("select name from sqlite_master where type = 'table' order by name")]
        out = {}
        for t in names:
            rows = con.execute(f'select * from "{t}" order by rowid').fetchall()
            out[t] = (len(rows), hashlib.sha256(repr(rows).encode()).hexdigest())
        return out
    finally:
        con.close()


@pytest.fixture(scope="module")
def sql():
    ex = SQLExpert()
    yield ex
    ex.close()


@pytest.fixture
def writable_copy(tmp_path):
    """A writable copy of Chinook: only the expert's own layers stand between it and a write."""
    path = tmp_path / "chinook-copy.sqlite"
    shutil.copyfile(CHINOOK_PATH, path)
    path.chmod(0o644)
    return path


# -- definition --------------------------------------------------------------------------


def test_definition_and_schema_description(sql):
    assert sql.name == "sql" and sql.Args is SQLArgs and sql.dialect == "sqlite"
    d = sql.description
    assert d.startswith("Writes one SQL query over the music store database (Chinook)")
    assert "Dialect: SQLite." in d
    assert "Album(AlbumId INTEGER primary key, Title NVARCHAR(160), ArtistId INTEGER → Artist.ArtistId)" in d
    assert "Country NVARCHAR(40) e.g. 'USA', 'Canada', 'Brazil'" in d  # the most frequent values first
    assert "Milliseconds INTEGER 1071..5286953" in d
    assert "Phone NVARCHAR(24)," in d.split("Customer(")[1]  # unique free text: no samples
    assert len(d) < 3000
    assert sorted(sql.guard.schema) == _TABLES
    json.dumps(sql.describe())
    assert len(sql.examples) >= 12


def test_builtin_experts_include_sql():
    names = [e.name for e in builtin_experts()]
    assert names[:3] == ["calculator", "database", "sql"]


@pytest.mark.parametrize("i", range(len(CHINOOK_SQL_EXAMPLES)))
def test_every_routing_example_passes_the_guard_and_runs(sql, i):
    ex = CHINOOK_SQL_EXAMPLES[i]
    res = sql.run(ex.args)
    assert res.data["row_count"] >= 1, ex.question
    assert res.text and "database:" in res.sources[0]


def test_answers_of_the_examples(sql):
    by_q = {e.question: e.args for e in CHINOOK_SQL_EXAMPLES}
    assert sql.run(by_q["How many tracks are longer than the average track?"]).value == 494
    assert sql.run(by_q["How many tracks have never been sold?"]).value == 1519
    assert sql.run(by_q["What percentage of tracks are in the Rock genre?"]).value == 37
    top = sql.run(by_q["Which customers spent more than 45 dollars in total?"])
    assert [(r["FirstName"], r["LastName"]) for r in top.value][:2] == [("Helena", "Holý"), ("Richard", "Cunningham")]
    assert top.value[0]["total"] == pytest.approx(49.62)
    assert sql.run(by_q["Which genre brings in the most revenue?"]).value == [{"Name": "Rock", "revenue": 826.65}]
    no_customers = sql.run(by_q["Which employees have no customers?"])
    assert no_customers.text.splitlines() == ["Andrew Adams", "Nancy Edwards", "Michael Mitchell", "Robert King",
                                              "Laura Callahan"]
    assert sql.run(by_q["Which artists have no albums?"]).data["row_count"] == 71


def test_what_runs_is_the_checked_rendering(sql):
    res = sql.run({"sql": "select count(*) from Track /* a comment; DROP TABLE Track */ where GenreId = 1 -- bye"})
    assert res.value == 1297
    assert res.data["sql"] == "SELECT COUNT(*) FROM Track WHERE GenreId = 1 LIMIT 1001"
    assert "DROP" in res.data["sql_written"]
    assert res.sources == ["database:Track"]


@pytest.mark.parametrize(
    "query, first_line",
    [
        ("SELECT e.FirstName || ' ' || e.LastName AS employee, m.FirstName AS manager FROM Employee e "
         "LEFT JOIN Employee m ON e.ReportsTo = m.EmployeeId ORDER BY e.EmployeeId", "employee: Andrew Adams | manager: (none)"),
        ("SELECT Name, RANK() OVER (PARTITION BY GenreId ORDER BY Milliseconds DESC) AS r FROM Track "
         "ORDER BY Milliseconds DESC LIMIT 1", "Name: Occupation / Precipice | r: 1"),
        ("SELECT g.n FROM (SELECT GenreId, count(*) AS n FROM Track GROUP BY GenreId) AS g WHERE g.GenreId = 1", "1297"),
        ("SELECT Title FROM Album JOIN Artist USING (ArtistId) WHERE Name = 'AC/DC' ORDER BY Title",
         "For Those About To Rock We Salute You"),
        ("SELECT count(*) FROM Artist a WHERE EXISTS (SELECT 1 FROM Album b WHERE b.ArtistId = a.ArtistId "
         "AND b.Title LIKE '%Live%')", "11"),
        ("SELECT t.Name FROM Track t, Album a WHERE t.AlbumId = a.AlbumId AND a.Title = 'Let There Be Rock' "
         "ORDER BY t.TrackId LIMIT 1", "Go Down"),
        ("WITH t(genre, n) AS (SELECT GenreId, count(*) FROM Track GROUP BY 1) SELECT max(n) FROM t", "1297"),
        ("SELECT CASE WHEN Milliseconds > 300000 THEN 'long' ELSE 'short' END AS kind, count(*) AS n FROM Track "
         "GROUP BY kind ORDER BY kind", "kind: long | n: 1069"),
        ("SELECT count(DISTINCT BillingCountry) FROM Invoice", "24"),
        ("SELECT ROUND(avg(Total) FILTER (WHERE BillingCountry = 'USA'), 2) FROM Invoice", "5.75"),
        ("SELECT julianday('2024-03-01') - julianday('2024-02-01')", "29"),
        ("SELECT upper(substr(Name, 1, 3)) || '!' FROM Genre ORDER BY GenreId LIMIT 1", "ROC!"),
        ("SELECT Name FROM Genre WHERE GenreId IN (1, 2) OR Name = 'Blues' ORDER BY GenreId", "Rock"),
    ],
)
def test_ordinary_sql_passes_the_guard(sql, query, first_line):
    assert sql.run({"sql": query}).text.splitlines()[0] == first_line


def test_names_are_case_insensitive_on_sqlite(sql):
    assert sql.run({"sql": 'SELECT count(*) FROM "track" t JOIN genre g ON g.genreid = t.GenreId '
                           "WHERE g.name = 'Jazz';"}).value == 130


def test_limit_is_added_and_capped(writable_copy):
    small = SQLExpert(f"sqlite:///{writable_copy}", max_rows=5)
    res = small.run({"sql": "SELECT Name FROM Track"})
    assert res.data["row_count"] == 5 and res.data["truncated"] is True
    assert res.data["sql"].endswith("LIMIT 6")
    assert res.text.endswith("(only the first 5 rows are shown)")
    res = small.run({"sql": "SELECT Name FROM Track ORDER BY Name LIMIT 100000"})
    assert res.data["row_count"] == 5 and res.data["truncated"] is True
    res = small.run({"sql": "SELECT Name FROM Track ORDER BY TrackId LIMIT 2 OFFSET 1"})
    assert res.value == [{"Name": "Balls to the Wall"}, {"Name": "Fast As a Shark"}]
    assert res.data["truncated"] is False
    small.close()


def test_guard_messages_name_what_is_allowed(sql):
    with pytest.raises(SQLRefusedError, match=r"unknown table 'Songs'; tables are: .*Track") as e:
        sql.run({"sql": "SELECT count(*) FROM Songs"})
    assert e.value.reason == "table"
    with pytest.raises(SQLRefusedError, match=r"'length' could not be resolved.*Track\(TrackId, Name") as e:
        sql.run({"sql": "SELECT Name FROM Track WHERE Length > 5"})
    assert e.value.reason == "column"
    with pytest.raises(SQLRefusedError, match="only SELECT queries are run, not DELETE"):
        sql.run({"sql": "DELETE FROM Track"})
    with pytest.raises(SQLRefusedError, match="2 statements were given"):
        sql.run({"sql": "SELECT 1; SELECT 2"})
    with pytest.raises(SQLRefusedError, match=r"function load_extension\(\) is not allowed"):
        sql.run({"sql": "SELECT load_extension('x')"})
    with pytest.raises(SQLRefusedError, match="not valid sqlite SQL"):
        sql.run({"sql": "SELEC Name FROM Track"})
    with pytest.raises(ArgumentError):
        sql.run({"query": "SELECT 1"})
    with pytest.raises(ArgumentError):
        sql.run({"sql": 42})


def test_database_errors_are_expert_errors(sql):
    # passes the guard, fails in SQLite: a clean error, not a crash
    with pytest.raises(ExpertError, match=r"database error: misuse of aggregate"):
        sql.run({"sql": "SELECT Name FROM Track WHERE count(*) > 1"})


def test_guard_without_a_database():
    guard = SQLGuard({"t": {"a": "INTEGER", "b": "TEXT"}}, "sqlite", max_rows=10)
    q = guard.check("with x as (select a, b from t where a > 1) select b, count(*) n from x group by b "
                    "having count(*) > 1 order by n desc limit 3")
    assert q.sql == ("WITH x AS (SELECT a, b FROM t WHERE a > 1) SELECT b, COUNT(*) AS n FROM x GROUP BY b "
                     "HAVING COUNT(*) > 1 ORDER BY n DESC LIMIT 3")
    assert (q.tables, q.limit, q.requested_limit, q.row_cap) == (["t"], 3, 3, 10)
    assert guard.check("SELECT a FROM t UNION SELECT a FROM t").sql.endswith("LIMIT 11")
    assert guard.check("(SELECT b FROM t)").sql == "SELECT b FROM t LIMIT 11"
    with pytest.raises(SQLRefusedError, match="LIMIT must be a plain whole number"):
        guard.check("SELECT a FROM t LIMIT -1")
    with pytest.raises(ValueError):
        SQLGuard({}, "sqlite")
    with pytest.raises(ValueError):
        SQLGuard({"t": {"a": "INT"}}, "sqlite", max_rows=0)
    assert {"count", "lower", "time_to_str", "row_number"} <= SAFE_FUNCTIONS
    assert not {"pg_read_file", "load_extension", "pg_sleep", "zeroblob", "set_config"} & SAFE_FUNCTIONS


def test_extra_functions_widen_the_allow_list():
    guard = SQLGuard({"t": {"a": "INTEGER"}}, "postgres", extra_functions={"pg_sleep"})
    assert guard.check("SELECT pg_sleep(0.1)").sql == "SELECT PG_SLEEP(0.1) LIMIT 1001"


def test_unsupported_dialect_is_refused(monkeypatch):
    import experts.text_to_sql as t2s

    def no_sqlite(name):
        raise ValueError(f"natural-language-to-SQL supports sqlite, postgresql; got '{name}x'")

    monkeypatch.setattr(t2s, "sqlglot_dialect", no_sqlite)
    with pytest.raises(ExpertError, match="supports sqlite, postgresql"):
        SQLExpert()


def test_sample_values_that_time_out_are_left_out(monkeypatch):
    import experts.text_to_sql as t2s

    monkeypatch.setattr(t2s, "_SAMPLE_SECONDS", 1e-9)  # only tiny tables finish before the first check
    ex = SQLExpert()
    d = ex.description
    assert "Track(TrackId INTEGER primary key, Name NVARCHAR(200), AlbumId INTEGER → Album.AlbumId, " \
           "MediaTypeId INTEGER → MediaType.MediaTypeId, GenreId INTEGER → Genre.GenreId, Composer NVARCHAR(220), " \
           "Milliseconds INTEGER, Bytes INTEGER, UnitPrice NUMERIC(10, 2))" in d
    assert "BillingCountry NVARCHAR(40)," in d
    assert "Name NVARCHAR(120) e.g. 'Alternative', 'Alternative & Punk', 'Blues'" in d  # Genre: 25 rows
    assert ex.run({"sql": "SELECT count(*) FROM Track"}).value == 3503  # the timeout was disarmed
    ex.close()


def test_bad_url_and_missing_file(tmp_path):
    with pytest.raises(ExpertError, match="cannot open database"):
        SQLExpert(f"sqlite:///{tmp_path}/missing.sqlite")
    with pytest.raises(ExpertError, match="cannot open database"):
        SQLExpert("nosuchdialect://x")


# -- hostile SQL: refused cleanly, nothing changes ------------------------------------------

_HOSTILE = for_dialect("sqlite")


def test_hostile_corpus_is_refused_and_changes_nothing(writable_copy, tmp_path):
    before = _snapshot(writable_copy)
    assert {t: n for t, (n, _) in before.items()} == _COUNTS
    sha_before = _sha256(writable_copy)
    ex = SQLExpert(f"sqlite:///{writable_copy}", timeout_s=1.0)
    evil = tmp_path / "evil.db"
    outcome: dict[str, str] = {}
    for h in _HOSTILE:
        text = h.render(t="Genre", c="Name", big="Track", evil=evil)
        t0 = time.perf_counter()
        with pytest.raises(ExpertError) as e:
            ex.run({"sql": text})
        elapsed = time.perf_counter() - t0
        assert elapsed < 5, (h.label, elapsed)
        if h.expect == "timeout":
            assert "timed out after 1 s" in str(e.value), h.label
        else:
            assert isinstance(e.value, SQLRefusedError) and str(e.value).startswith("refused: "), (h.label, e.value)
        outcome[h.label] = str(e.value)
    ex.close()
    assert len(outcome) == len(_HOSTILE) >= 50
    assert _snapshot(writable_copy) == before
    assert _sha256(writable_copy) == sha_before
    assert not evil.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chinook-copy.sqlite"]


def test_the_connection_refuses_writes_without_the_guard(writable_copy):
    """Second layer: SQL that skips the guard still cannot write (mode=ro + query_only)."""
    ex = SQLExpert(f"sqlite:///{writable_copy}")
    before = _snapshot(writable_copy)
    for stmt in ("DELETE FROM Genre", "UPDATE Track SET Name = 'x'", "CREATE TABLE evil (x)",
                 "PRAGMA query_only = OFF; DELETE FROM Genre"):
        with pytest.raises(ExpertError, match="database error: .*(readonly|read-only|one statement)"):
            ex.fetch(stmt, 10)
    ex.close()
    assert _snapshot(writable_copy) == before


def test_timeout_stops_an_endless_query(sql):
    ex = SQLExpert(timeout_s=0.3, sample_values=0)
    t0 = time.perf_counter()
    with pytest.raises(ExpertError, match=r"query timed out after 0.3 s"):
        ex.run({"sql": "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT max(n) FROM r"})
    assert time.perf_counter() - t0 < 3
    assert ex.run({"sql": "SELECT count(*) FROM Genre"}).value == 25  # the connection is usable afterwards
    ex.close()


def test_bundled_file_unchanged():
    assert _sha256(CHINOOK_PATH) == "7651ba378ac2fcd0dfc3c66fb101f7a7eed3ba39a612ec642b96e20702061f15"


# -- through the MRKL system: the router writes SQL ------------------------------------------


def _system(backend):
    return MRKL(experts=builtin_experts(), backend=backend, router=LLMRouter(backend, max_arg_tokens=160))


def _raw(sql_text: str) -> str:
    return json.dumps({"sql": sql_text})[2:]  # what the model writes after the '{"' prefill


def test_router_writes_sql_and_the_expert_answers():
    q = "How many tracks have never been bought?"
    backend = ScriptedBackend(card_scorer("sql"), outputs=[
        _raw("SELECT COUNT(*) FROM Track WHERE TrackId NOT IN (SELECT TrackId FROM InvoiceLine)")])
    answer = _system(backend).ask(q)
    assert answer.expert == "sql" and answer.value == 1519 and answer.text == "1519"
    prompt = [p for kind, p in backend.calls if kind == "generate"][0]
    assert "Schema: Artist(ArtistId INTEGER primary key" in prompt  # the introspected schema
    assert "How many tracks have never been sold?" in prompt  # the nearest routing example


def test_refused_sql_is_repaired_with_the_guard_message():
    backend = ScriptedBackend(card_scorer("sql"), outputs=[
        _raw("SELECT count(*) FROM Songs"), _raw("SELECT count(*) FROM Track")])
    answer = _system(backend).ask("how many songs are there?")
    assert answer.expert == "sql" and answer.value == 3503
    assert answer.trace.steps[0].error.startswith("refused: unknown table 'Songs'")
    repair_prompt = [p for kind, p in backend.calls if kind == "generate"][-1]
    assert "Error: refused: unknown table 'Songs'" in repair_prompt


def test_hostile_sql_from_the_router_ends_in_the_fallback(writable_copy):
    evil = _raw("SELECT 1; DROP TABLE Track")
    backend = ScriptedBackend(card_scorer("sql"), outputs=[evil, evil], chat_reply="I can't do that.")
    answer = _system(backend).ask("drop the tracks table")
    assert answer.expert == FALLBACK
    # the refusal is shown before the model's own answer
    assert answer.text.startswith("(expert 'sql' failed: refused: 2 statements")
    assert answer.text.endswith("the language model answered instead)\nI can't do that.")
    assert "expert 'sql' failed: refused: 2 statements" in answer.trace.fallback_reason
    assert _sha256(CHINOOK_PATH) == "7651ba378ac2fcd0dfc3c66fb101f7a7eed3ba39a612ec642b96e20702061f15"


def test_runaway_sql_cut_off_by_the_token_budget_is_not_run():
    # "¿Cuántos álbumes tiene Led Zeppelin?" once made SmolLM2 write AlbumId = 1000... until
    # the budget ran out; the cut-off SQL ran and "0" came back as the answer
    runaway = 'sql": "SELECT COUNT(*) FROM Album WHERE AlbumId = ' + "0" * 120
    backend = ScriptedBackend(card_scorer("sql"), outputs=[runaway, runaway], chat_reply="No lo sé.")
    answer = _system(backend).ask("¿Cuántos álbumes tiene Led Zeppelin?")
    assert answer.expert == FALLBACK and answer.value != 0
    assert "could not extract valid arguments for 'sql'" in answer.trace.fallback_reason
    assert "stops inside a string (cut off at the token limit?)" in answer.trace.fallback_reason
    assert answer.text.endswith("No lo sé.")
    assert not any(s.expert == "sql" and s.result is not None for s in answer.trace.steps)
