"""Natural-language-to-SQL: the language model writes the SQL, a guard decides if it runs.

The structured :class:`experts.database.DatabaseExpert` covers lookups, filters,
counts and one aggregate per group; questions that need ``HAVING``, subqueries,
anti-joins ("never", "no ..."), comparisons with an average, percentages or
arithmetic over columns do not fit its argument object. :class:`SQLExpert` is a
second, separate expert for those (name ``sql``): its argument is one SQL query
written by the router language model (MRKL argument extraction, Karpas et al.,
2022, "MRKL Systems", Sec. 2 and 4), shown the introspected schema — tables,
columns with types, primary and foreign keys, a few sample values per column —
and question → SQL routing examples.

Nothing the model writes runs unchecked. Three layers:

1. :class:`experts.sql_guard.SQLGuard` parses the SQL with sqlglot in the engine's
   dialect and accepts only one read-only ``SELECT`` over known tables and columns
   calling allow-listed functions; the ``LIMIT`` is added or capped. The checked
   tree is rendered back to SQL (without comments) and that is what runs.
2. The connection is read-only (:func:`experts.database.create_readonly_engine`:
   SQLite ``mode=ro`` + ``PRAGMA query_only``; PostgreSQL
   ``default_transaction_read_only`` + ``SET TRANSACTION READ ONLY``), and every
   transaction is rolled back.
3. A statement timeout (SQLite: a progress handler; PostgreSQL:
   ``SET LOCAL statement_timeout``).

A refusal is an :class:`experts.sql_guard.SQLRefusedError` (an ``ExpertError``) whose
message names the rule and, for unknown names, the valid tables and columns, so the
router can repair its SQL once.

Why a separate expert rather than a mode of ``database``: the two take different
arguments (a flat JSON object vs. SQL text), and a small router model fills one
schema far better than a union of two; as separate experts each has its own
routing examples, and a user can register either one alone.
"""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from typing import Any, ClassVar, Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Table, func, select
from sqlalchemy import exc as sa_exc

from experts.database import DatabaseExpert, _fmt, _jsonable, _python_type
from experts.sql_guard import GuardedQuery, SQLGuard, sqlglot_dialect
from mrkl.errors import ExpertError
from mrkl.expert import ExpertResult, RoutingExample

__all__ = ["SQLExpert", "SQLArgs", "CHINOOK_SQL_EXAMPLES"]

_SAMPLES = 3
_SAMPLE_CHARS = 32
_SAMPLE_SECONDS = 1.0  # time budget for one table's sample values
_CATEGORICAL_MAX = 30  # text columns with more distinct values than this get no samples
_CHINOOK_SENTENCE = (
    "Writes one SQL query over the music store database (Chinook) for questions that need totals "
    "per customer, HAVING, subqueries, 'never'/'no' questions, percentages or comparisons with an average."
)


class SQLArgs(BaseModel):
    """Arguments of :class:`SQLExpert`: one read-only SQL ``SELECT`` query."""

    model_config = ConfigDict(extra="forbid")

    sql: str = Field(description="one SQL SELECT query over the tables of the schema")

    @field_validator("sql", mode="before")
    @classmethod
    def _strip(cls, v: Any) -> Any:
        return v.strip() if isinstance(v, str) else v


def _ex(question: str, sql: str) -> RoutingExample:
    return RoutingExample(question, {"sql": sql})


#: Routing examples for the bundled Chinook database (SQLite dialect): questions
#: the structured database expert cannot express. The first six are the ones the
#: router's expert card shows, so they cover one kind each: "never", totals with
#: HAVING, percentages, comparisons with an average, "no ...", counts with HAVING;
#: they avoid the wording of the structured expert's examples ("tracks in the X genre").
CHINOOK_SQL_EXAMPLES: list[RoutingExample] = [
    _ex("How many tracks have never been sold?",
        "SELECT COUNT(*) FROM Track WHERE TrackId NOT IN (SELECT TrackId FROM InvoiceLine)"),
    _ex("Which customers spent more than 45 dollars in total?",
        "SELECT c.FirstName, c.LastName, SUM(i.Total) AS total FROM Customer c JOIN Invoice i "
        "ON i.CustomerId = c.CustomerId GROUP BY c.CustomerId HAVING SUM(i.Total) > 45 ORDER BY total DESC"),
    _ex("What percentage of invoices come from the USA?",
        "SELECT ROUND(100.0 * SUM(CASE WHEN BillingCountry = 'USA' THEN 1 ELSE 0 END) / COUNT(*), 1) AS percent "
        "FROM Invoice"),
    _ex("How many tracks are longer than the average track?",
        "SELECT COUNT(*) FROM Track WHERE Milliseconds > (SELECT AVG(Milliseconds) FROM Track)"),
    _ex("Which artists have no albums?",
        "SELECT Name FROM Artist WHERE ArtistId NOT IN (SELECT ArtistId FROM Album)"),
    _ex("Which albums have more than 20 tracks?",
        "SELECT a.Title, COUNT(*) AS tracks FROM Album a JOIN Track t ON t.AlbumId = a.AlbumId "
        "GROUP BY a.AlbumId HAVING COUNT(*) > 20 ORDER BY tracks DESC"),
    _ex("Which year had the highest total sales?",
        "SELECT strftime('%Y', InvoiceDate) AS year, SUM(Total) AS sales FROM Invoice GROUP BY year "
        "ORDER BY sales DESC LIMIT 1"),
    _ex("Who are the top 3 customers by total spending?",
        "SELECT c.FirstName, c.LastName, SUM(i.Total) AS total FROM Customer c JOIN Invoice i "
        "ON i.CustomerId = c.CustomerId GROUP BY c.CustomerId ORDER BY total DESC LIMIT 3"),
    _ex("Which employees have no customers?",
        "SELECT FirstName, LastName FROM Employee WHERE EmployeeId NOT IN "
        "(SELECT SupportRepId FROM Customer WHERE SupportRepId IS NOT NULL)"),
    _ex("Which genre brings in the most revenue?",
        "SELECT g.Name, SUM(il.UnitPrice * il.Quantity) AS revenue FROM InvoiceLine il JOIN Track t "
        "ON t.TrackId = il.TrackId JOIN Genre g ON g.GenreId = t.GenreId GROUP BY g.GenreId "
        "ORDER BY revenue DESC LIMIT 1"),
    _ex("What is the average invoice total per country, highest first?",
        "SELECT BillingCountry, ROUND(AVG(Total), 2) AS average FROM Invoice GROUP BY BillingCountry "
        "ORDER BY average DESC"),
    _ex("How many invoices were issued in each year?",
        "SELECT strftime('%Y', InvoiceDate) AS year, COUNT(*) AS invoices FROM Invoice GROUP BY year ORDER BY year"),
    _ex("Which playlists have more than 100 tracks?",
        "SELECT p.Name, COUNT(*) AS tracks FROM Playlist p JOIN PlaylistTrack pt ON pt.PlaylistId = p.PlaylistId "
        "GROUP BY p.PlaylistId HAVING COUNT(*) > 100 ORDER BY tracks DESC"),
    _ex("How much revenue did each sales support agent bring in?",
        "SELECT e.FirstName, e.LastName, SUM(i.Total) AS revenue FROM Employee e JOIN Customer c "
        "ON c.SupportRepId = e.EmployeeId JOIN Invoice i ON i.CustomerId = c.CustomerId "
        "GROUP BY e.EmployeeId ORDER BY revenue DESC"),
    _ex("What percentage of tracks are in the Rock genre?",
        "SELECT ROUND(100.0 * SUM(CASE WHEN g.Name = 'Rock' THEN 1 ELSE 0 END) / COUNT(*), 1) AS percent "
        "FROM Track t JOIN Genre g ON g.GenreId = t.GenreId"),
]


class SQLExpert(DatabaseExpert):
    """Natural-language-to-SQL over a relational database, behind a guard (MRKL discrete expert).

    The router writes :class:`SQLArgs` (one ``SELECT``) after reading :attr:`description`,
    which carries the introspected schema. :meth:`run` checks the SQL with
    :class:`~experts.sql_guard.SQLGuard`, runs the checked rendering on a read-only
    connection under the statement timeout and returns the rows.
    Karpas et al. (2022), "MRKL Systems", Sec. 2 (discrete experts) and Sec. 4
    (argument extraction).

    Args:
        url: a SQLAlchemy URL (SQLite or PostgreSQL); ``None`` opens the bundled Chinook
            database read-only.
        name: expert name (default ``"sql"``).
        description: overrides the generated description (a sentence, then the schema).
        max_rows: row cap; a query's ``LIMIT`` is capped at this, and one is added when missing.
        timeout_s: statement timeout in seconds.
        examples: routing examples (question → ``{"sql": ...}``); default the Chinook
            examples for the bundled database, none for another URL.
        extra_functions: function names added to the guard's allow-list (e.g. ``{"pg_sleep"}``).
        sample_values: show up to this many distinct sample values per text column in the
            schema description (0: none); numeric and date columns show their range.

    Raises:
        ValueError: ``max_rows`` < 1 or ``timeout_s`` <= 0.
        ExpertError: the database cannot be opened, has no tables, or is of a dialect
            other than SQLite or PostgreSQL (whose read-only connections and timeouts
            mrkl knows how to set).

    Attributes:
        guard: the :class:`~experts.sql_guard.SQLGuard` built from the reflected schema.
        dialect: the sqlglot dialect (``"sqlite"`` or ``"postgres"``).
    """

    name: ClassVar[str] = "sql"
    description: ClassVar[str] = "Natural-language-to-SQL over a database."
    Args: ClassVar[type[BaseModel]] = SQLArgs
    examples: ClassVar[list[RoutingExample]] = CHINOOK_SQL_EXAMPLES

    def __init__(
        self,
        url: str | None = None,
        *,
        name: str = "sql",
        description: str | None = None,
        max_rows: int = 1000,
        timeout_s: float = 5.0,
        examples: list[RoutingExample] | None = None,
        extra_functions: Iterable[str] = (),
        sample_values: int = _SAMPLES,
    ) -> None:
        self.sample_values = max(0, int(sample_values))
        if examples is None:
            examples = list(CHINOOK_SQL_EXAMPLES) if url is None else []
        super().__init__(url, name=name, description=description, max_rows=max_rows, timeout_s=timeout_s,
                         examples=examples)
        try:
            self.dialect = sqlglot_dialect(self._dialect)
        except ValueError as exc:
            self.engine.dispose()
            raise ExpertError(str(exc)) from None
        default_schema = "main" if self._dialect == "sqlite" else self._default_schema()
        self.guard = SQLGuard.from_metadata(
            self.metadata, self.dialect, max_rows=self.max_rows, extra_functions=extra_functions,
            default_schema=default_schema,
        )

    # -- schema description ------------------------------------------------------
    def _default_schema(self) -> str | None:
        try:
            return self.engine.dialect.default_schema_name
        except Exception:  # noqa: BLE001 - only a nicety for qualified names
            return None

    def _describe(self, bundled: bool) -> str:
        head = _CHINOOK_SENTENCE if bundled else (
            "Writes one SQL query over the database with tables "
            + ", ".join(t.name for t in self._tables) + "."
        )
        dialect_name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(self._dialect, self._dialect)
        return f"{head} Dialect: {dialect_name}. Schema: {self.schema_text()}"

    def schema_text(self) -> str:
        """The schema as the language model reads it, one table after another.

        Format: ``Table(Col TYPE primary key, Col TYPE → Other.Col, Col TYPE e.g. 'a', 'b',
        Col TYPE 0.99..1.99); ...``: every column with its type, primary keys, foreign
        keys and, when ``sample_values`` > 0, the most frequent values of categorical
        text columns and the range of numeric and date columns (read with SQLAlchemy Core, not with
        model-written SQL).
        """
        parts = []
        for t in self._tables:
            fks = {}
            for fk in t.foreign_key_constraints:
                for el in fk.elements:
                    fks[el.parent.name] = f"{fk.referred_table.name}.{el.column.name}"
            cols = []
            samples = self._samples(t) if self.sample_values else {}
            for c in t.columns:
                try:
                    typ = str(c.type)
                except Exception:  # noqa: BLE001
                    typ = "?"
                bits = [c.name, typ]
                if c.primary_key:
                    bits.append("primary key")
                if c.name in fks:
                    bits.append(f"→ {fks[c.name]}")
                elif c.name in samples:
                    bits.append(samples[c.name])
                cols.append(" ".join(bits))
            parts.append(f"{t.name}({', '.join(cols)})")
        return "; ".join(parts) + "."

    def _samples(self, table: Table) -> dict[str, str]:
        """Sample values per column: a few values of categorical text columns, ranges of numbers and dates.

        A text column gets samples when it has at most 30 distinct values and they
        repeat (countries, cities, job titles), or when it is the name column of a small
        lookup table (genres, media types). Unique free text (addresses, phone numbers)
        gets none: it costs prompt tokens and teaches the model nothing about literals.
        """
        out: dict[str, str] = {}
        name_cols = self._name_columns(table)
        try:
            with self.engine.connect() as conn:
                # a big table must not stall start-up: its samples get at most this long
                disarm = self._arm_timeout(conn, min(self.timeout_s, _SAMPLE_SECONDS))
                try:
                    for c in table.columns:
                        if not (c.primary_key or c.foreign_keys):
                            self._sample_column(conn, c, name_cols, out)
                finally:
                    disarm()
                    conn.rollback()
        except sa_exc.SQLAlchemyError:
            pass  # samples are a nicety (and may time out); the schema itself is already known
        return out

    def _sample_column(self, conn: Any, c: Any, name_cols: list, out: dict[str, str]) -> None:
        pt = _python_type(c)
        if pt is str:
            n, distinct = conn.execute(select(func.count(c), func.count(c.distinct()))).one()
            if not n or distinct > _CATEGORICAL_MAX or (distinct == n and c not in name_cols):
                return
            stmt = select(c).where(c.is_not(None)).group_by(c).order_by(func.count().desc(), c)
            vals = [str(v)[:_SAMPLE_CHARS] for (v,) in conn.execute(stmt.limit(self.sample_values))]
            if vals:
                out[c.name] = "e.g. " + ", ".join("'" + v.replace("'", "''") + "'" for v in vals)
        elif pt in (int, float, Decimal, _dt.date, _dt.datetime):
            lo, hi = conn.execute(select(func.min(c), func.max(c))).one()
            if lo is not None:
                show = (lambda v: _fmt(_jsonable(v))) if pt in (int, float, Decimal) else str
                out[c.name] = f"{show(lo)}..{show(hi)}"

    # -- run -----------------------------------------------------------------------
    def check(self, sql: str) -> GuardedQuery:
        """Check model-written SQL without running it (see :meth:`SQLGuard.check`).

        Raises:
            SQLRefusedError: the SQL breaks a rule of the guard.
        """
        return self.guard.check(sql)

    def run(self, args: BaseModel | dict[str, Any]) -> ExpertResult:
        """Check and run the model's SQL.

        Args:
            args: :class:`SQLArgs` (or a dict that validates against it).

        Returns:
            ExpertResult with ``value`` = the single value when the result is one row of
            one column (a count, a sum), else a list of row dicts; ``text`` = the value, or
            one line per row (at most 20, then ``... (N more)``); ``sources`` =
            ``["database:Table", ...]``; ``data`` = ``sql`` (as executed), ``sql_written``
            (as the model wrote it), ``columns``, ``rows``, ``row_count``, ``truncated``.

        Raises:
            ArgumentError: a dict that does not validate.
            SQLRefusedError: the guard refused the SQL (an ``ExpertError``).
            ExpertError: the query timed out, or the database reported an error.
        """
        a: SQLArgs = self.parse_args(args)  # type: ignore[assignment]
        checked = self.guard.check(a.sql)
        keys, rows = self.fetch(checked.sql, checked.limit)
        truncated = len(rows) > self.max_rows
        data_rows = [[_jsonable(v) for v in r] for r in rows[: self.max_rows]]
        keys = [str(k) for k in keys]
        data: dict[str, Any] = {
            "sql": checked.sql,
            "sql_written": a.sql,
            "columns": keys,
            "rows": data_rows,
            "row_count": len(data_rows),
            "truncated": truncated,
        }
        sources = [f"database:{t}" for t in checked.tables]
        if len(keys) == 1 and len(data_rows) == 1:
            value = data_rows[0][0]
            text = _fmt(value) if value is not None else "no value (the query returned NULL)"
            return ExpertResult(value=value, text=text, sources=sources, data=data)
        dict_rows = [dict(zip(keys, r)) for r in data_rows]
        text = self._rows_text(keys, data_rows)
        if truncated:
            text += f"\n(only the first {self.max_rows} rows are shown)"
        return ExpertResult(value=dict_rows, text=text, sources=sources, data=data)
