"""A guard for model-written SQL: only one read-only ``SELECT`` over known tables and columns.

A language model that writes SQL (natural-language-to-SQL, the "NL-to-SQL" mode of
a MRKL database expert; Karpas et al., 2022, "MRKL Systems", Sec. 2) must never be
trusted with the database. :class:`SQLGuard` parses the text with sqlglot in the
engine's dialect and accepts it only when

* it is exactly one statement, and that statement is a query (``SELECT``, a set
  operation such as ``UNION``, optionally with ``WITH`` common table expressions);
* no part of it writes, changes the schema or the session: no ``INSERT``/``UPDATE``/
  ``DELETE``/``MERGE`` (also not inside a ``WITH``), no DDL, ``SELECT ... INTO``,
  ``FOR UPDATE``, ``COPY``, ``SET``, ``PRAGMA``, ``ATTACH``/``DETACH``, transaction
  control, bind parameters, or anything sqlglot can only parse as an opaque command;
* every function called is on an allow-list of pure functions (aggregates, string,
  number, date and window functions), so ``pg_read_file``, ``lo_import``,
  ``set_config``, ``query_to_xml``, ``pg_sleep``, ``load_extension``, ``readfile`` and
  the like are refused, as are table-valued functions in ``FROM``;
* every table is one of the known (reflected) tables or a CTE of the query itself,
  without a foreign schema/catalog (no ``pg_catalog``, ``information_schema``,
  ``sqlite_master``), and every column resolves against those tables
  (sqlglot's ``qualify`` optimizer with the reflected schema);
* its ``LIMIT`` is a plain number; a missing or larger one is replaced by the row cap.

What is executed is sqlglot's rendering of the checked syntax tree, without
comments, so the database runs exactly what was checked. The guard is one of
three layers: the connection is read-only as well (SQLite ``mode=ro`` and
``PRAGMA query_only``, PostgreSQL ``default_transaction_read_only`` and
``SET TRANSACTION READ ONLY``), and every statement runs under a timeout; see
:class:`experts.text_to_sql.SQLExpert`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, SchemaError, SqlglotError, TokenError
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from mrkl.errors import ExpertError

__all__ = [
    "SQLGuard",
    "GuardedQuery",
    "SQLRefusedError",
    "SAFE_FUNCTIONS",
    "SQLGLOT_DIALECTS",
    "sqlglot_dialect",
]

#: SQLAlchemy dialect name → sqlglot dialect name, for the dialects whose
#: read-only connection and statement timeout mrkl knows how to set.
SQLGLOT_DIALECTS: dict[str, str] = {"sqlite": "sqlite", "postgresql": "postgres"}

#: Functions a query may call (lower case). Names are sqlglot's canonical names
#: (``TIME_TO_STR`` for SQLite's ``strftime``, ``STR_POSITION`` for ``instr``) and,
#: for functions sqlglot does not model, the name as written. Left out on purpose:
#: anything touching files, the server, the session or other databases, sleeping,
#: and functions that build arbitrarily large values from a small input
#: (``zeroblob``, ``randomblob``, ``printf``/``format``, ``repeat``, ``lpad``/``rpad``).
SAFE_FUNCTIONS: frozenset[str] = frozenset(
    """
    count sum avg min max total group_concat string_agg array_agg logical_and logical_or
    bool_and bool_or stddev stddev_pop stddev_samp variance var_pop var_samp median
    percentile_cont percentile_disc mode count_if
    abs round ceil ceiling floor sqrt pow power mod sign trunc exp ln log log10 log2 rand random pi
    greatest least
    lower upper length char_length character_length substring substr trim ltrim rtrim btrim
    replace str_position instr strpos position left right concat concat_ws initcap reverse
    split_part unicode chr char hex md5 regexp_like regexp_replace regexp_extract quote typeof
    coalesce ifnull nullif if iif case cast try_cast
    current_date current_time current_timestamp now date time datetime julianday strftime
    time_to_str ts_or_ds_to_timestamp ts_or_ds_to_date str_to_time str_to_date to_char to_date
    to_number extract date_part date_trunc timestamp_trunc age make_date unix_epoch unixepoch
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
    exists
    """.split()
)

# nodes that write, change the schema or the session, run opaque commands, or take parameters
_FORBIDDEN_NODES: tuple[type, ...] = tuple(
    c
    for c in (
        getattr(exp, n, None)
        for n in (
            "DML", "DDL", "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter",
            "TruncateTable", "Command", "Into", "Lock", "Set", "Pragma", "Attach", "Detach",
            "Copy", "Transaction", "Commit", "Rollback", "Use", "Placeholder", "Parameter",
            "SessionParameter", "Returning", "Grant", "Revoke", "Describe", "Show", "LoadData",
            "Kill", "Analyze", "Cache", "Uncache", "Refresh", "Execute",
        )
    )
    if isinstance(c, type)
)

# sqlglot models some operators as functions too (AND, OR, ^, ~, ->, COLLATE ...): these are
# operators written with symbols or keywords, never calls of a named function
_OPERATORS = (exp.Connector, exp.Binary, exp.Unary, exp.Predicate)

_WHAT = {
    "Insert": "INSERT", "Update": "UPDATE", "Delete": "DELETE", "Merge": "MERGE", "Create": "CREATE",
    "Drop": "DROP", "Alter": "ALTER", "TruncateTable": "TRUNCATE", "Into": "SELECT ... INTO",
    "Lock": "FOR UPDATE/SHARE (row locks)", "Set": "SET", "Pragma": "PRAGMA", "Attach": "ATTACH",
    "Detach": "DETACH", "Copy": "COPY", "Transaction": "transaction control", "Commit": "COMMIT",
    "Rollback": "ROLLBACK", "Use": "USE", "Placeholder": "bind parameters", "Parameter": "bind parameters",
    "SessionParameter": "session parameters", "Returning": "RETURNING", "Grant": "GRANT", "Revoke": "REVOKE",
    "Command": "a statement sqlglot cannot check",
}

MAX_SQL_CHARS = 20_000


class _DropCommandFallbackWarnings(logging.Filter):
    """sqlglot logs a warning when it falls back to an opaque Command; the guard refuses those anyway."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


logging.getLogger("sqlglot").addFilter(_DropCommandFallbackWarnings())


class SQLRefusedError(ExpertError):
    """Model-written SQL that the guard will not execute.

    The message says what was refused and what is allowed instead (it is shown to
    the router when it repairs its SQL).

    Attributes:
        sql: the refused text.
        reason: a short machine-readable reason: ``empty``, ``too_long``, ``syntax``,
            ``multiple_statements``, ``not_a_query``, ``forbidden``, ``function``,
            ``table``, ``column``, ``limit``.
    """

    def __init__(self, message: str, *, sql: str = "", reason: str = "forbidden") -> None:
        super().__init__(message)
        self.sql = sql
        self.reason = reason


@dataclass
class GuardedQuery:
    """A query that passed the guard.

    Attributes:
        sql: the SQL to execute, rendered by sqlglot in the engine's dialect from the
            checked tree (comments removed, ``LIMIT`` set).
        tables: the known tables it reads (names as reflected, sorted).
        limit: the ``LIMIT`` put on the outermost query (rows).
        requested_limit: the ``LIMIT`` the text asked for, or ``None``.
        row_cap: the guard's cap; more rows than this are never returned.
    """

    sql: str
    tables: list[str] = field(default_factory=list)
    limit: int = 0
    requested_limit: int | None = None
    row_cap: int = 0


def sqlglot_dialect(sqlalchemy_dialect: str) -> str:
    """The sqlglot dialect for a SQLAlchemy dialect name (``"postgresql"`` → ``"postgres"``).

    Raises:
        ValueError: a dialect for which mrkl cannot make connections read-only and
            time-limited (only SQLite and PostgreSQL are supported).
    """
    try:
        return SQLGLOT_DIALECTS[sqlalchemy_dialect]
    except KeyError:
        raise ValueError(
            f"natural-language-to-SQL supports {', '.join(SQLGLOT_DIALECTS)}; got '{sqlalchemy_dialect}'"
        ) from None


class SQLGuard:
    """Check model-written SQL against a known schema; see the module docstring for the rules.

    Args:
        schema: ``{table: {column: type}}`` (the types are SQL type names, e.g. ``"INTEGER"``).
        dialect: the sqlglot dialect (``"sqlite"``, ``"postgres"``).
        max_rows: the row cap: the outermost ``LIMIT`` is at most this (plus one row,
            to tell a full page from a truncated one; see :meth:`check`).
        allowed_functions: overrides :data:`SAFE_FUNCTIONS`.
        extra_functions: names added to the allow-list (e.g. ``{"pg_sleep"}`` for a test).
        default_schema: the one schema qualifier that is accepted (``"public"`` on
            PostgreSQL, ``"main"`` on SQLite); any other qualifier is refused.

    Raises:
        ValueError: ``max_rows`` < 1, or an empty schema.
    """

    def __init__(
        self,
        schema: Mapping[str, Mapping[str, str]],
        dialect: str,
        *,
        max_rows: int = 1000,
        allowed_functions: Iterable[str] | None = None,
        extra_functions: Iterable[str] = (),
        default_schema: str | None = None,
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        if not schema:
            raise ValueError("the schema has no tables")
        self.dialect = dialect
        self.max_rows = int(max_rows)
        self.functions = frozenset(f.lower() for f in (allowed_functions or SAFE_FUNCTIONS)) | {
            f.lower() for f in extra_functions
        }
        self.default_schema = default_schema
        self.schema = {str(t): {str(c): str(ty) for c, ty in cols.items()} for t, cols in schema.items()}
        self._mapping = MappingSchema(self.schema, dialect=dialect)
        # normalised (as the dialect folds unquoted names) → real name
        self._tables = {self._fold(t): t for t in self.schema}

    @classmethod
    def from_metadata(cls, metadata: Any, dialect: str, **kwargs: Any) -> "SQLGuard":
        """A guard for the tables of a reflected SQLAlchemy ``MetaData``.

        Args:
            metadata: ``sqlalchemy.MetaData`` after ``reflect``.
            dialect: the sqlglot dialect.
            **kwargs: passed to :class:`SQLGuard`.
        """
        schema: dict[str, dict[str, str]] = {}
        for table in metadata.sorted_tables:
            cols = {}
            for col in table.columns:
                try:
                    cols[col.name] = str(col.type)
                except Exception:  # a type SQLAlchemy cannot render: the name is what matters
                    cols[col.name] = "UNKNOWN"
            schema[table.name] = cols
        return cls(schema, dialect, **kwargs)

    # ------------------------------------------------------------ helpers
    def _fold(self, name: str) -> str:
        """A name as the dialect folds an unquoted identifier (SQLite: case-insensitive)."""
        return name.lower() if self.dialect in ("sqlite", "postgres") else name

    def _refuse(self, sql: str, reason: str, message: str) -> SQLRefusedError:
        return SQLRefusedError(f"refused: {message}", sql=sql, reason=reason)

    def _table_name(self, node: exp.Table) -> str | None:
        """The real name of a known table (as the dialect resolves the identifier), or None."""
        ident = node.this
        if not isinstance(ident, exp.Identifier):
            return None
        if ident.quoted and self.dialect == "postgres":  # quoted names are case-sensitive there
            return ident.name if ident.name in self.schema else None
        return self._tables.get(self._fold(ident.name))

    # ------------------------------------------------------------ the check
    def check(self, sql: str) -> GuardedQuery:
        """Check ``sql`` and return the form to execute.

        Args:
            sql: model-written SQL text (one statement; a trailing ``;`` is fine).

        Returns:
            A :class:`GuardedQuery`. Its ``limit`` is the requested ``LIMIT`` when that
            is at most ``max_rows``, else ``max_rows + 1``, so the caller can tell that
            rows were cut off (fetch at most ``limit`` rows and show ``max_rows``).

        Raises:
            SQLRefusedError: the text breaks a rule; the message names the rule and
                what is allowed (tables and columns for unknown names).
        """
        if not isinstance(sql, str) or not sql.strip():
            raise self._refuse(str(sql or ""), "empty", "no SQL was given; write one SELECT statement")
        if len(sql) > MAX_SQL_CHARS:
            raise self._refuse(sql, "too_long", f"the SQL is {len(sql):,} characters; the limit is {MAX_SQL_CHARS:,}")
        if "\x00" in sql:
            raise self._refuse(sql, "syntax", "the SQL contains a NUL character")
        try:
            statements = [s for s in sqlglot.parse(sql, read=self.dialect) if s is not None]
        except (ParseError, TokenError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise self._refuse(sql, "syntax", f"not valid {self.dialect} SQL ({first[:200]})") from None
        except (SqlglotError, RecursionError, ValueError) as exc:
            raise self._refuse(sql, "syntax", f"the SQL could not be parsed ({type(exc).__name__})") from None
        if not statements:
            raise self._refuse(sql, "empty", "no SQL statement was found; write one SELECT statement")
        if len(statements) > 1:
            raise self._refuse(
                sql, "multiple_statements", f"{len(statements)} statements were given; write exactly one SELECT"
            )
        root = statements[0]
        if isinstance(root, exp.Subquery):  # "(SELECT ...)"
            root = root.unnest()
        if not isinstance(root, (exp.Select, exp.SetOperation)):
            what = _WHAT.get(type(root).__name__, type(root).__name__.upper())
            raise self._refuse(sql, "not_a_query", f"only SELECT queries are run, not {what}")

        cte_names: set[str] = set()
        for node in root.walk():
            if isinstance(node, _FORBIDDEN_NODES):
                kind = type(node).__name__
                raise self._refuse(sql, "forbidden", f"not allowed: {_WHAT.get(kind, kind)}; only reading SELECT queries are run")
            if isinstance(node, exp.Fetch):
                raise self._refuse(sql, "limit", "FETCH FIRST is not supported; write LIMIT n")
            if isinstance(node, exp.Func) and not isinstance(node, _OPERATORS):
                fname = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
                if fname.lower() not in self.functions:
                    raise self._refuse(
                        sql, "function", f"function {fname.lower()}() is not allowed (only aggregate, string, "
                        "number, date and window functions are)"
                    )
            if isinstance(node, exp.CTE):
                cte_names.add(self._fold(node.alias_or_name))

        tables: set[str] = set()
        for node in root.find_all(exp.Table):
            if not isinstance(node.this, exp.Identifier):
                raise self._refuse(sql, "table", "table-valued functions are not allowed in FROM; name a table")
            catalog, db = node.catalog, node.db
            if catalog or (db and (self.default_schema is None or self._fold(db) != self._fold(self.default_schema))):
                qualifier = ".".join(p for p in (catalog, db) if p)
                raise self._refuse(
                    sql, "table", f"table {qualifier}.{node.name} is outside the database's tables; "
                    f"tables are: {', '.join(self.schema)}"
                )
            if not db and self._fold(node.name) in cte_names:
                continue
            real = self._table_name(node)
            if real is None:
                raise self._refuse(sql, "table", f"unknown table '{node.name}'; tables are: {', '.join(self.schema)}")
            tables.add(real)

        self._check_columns(sql, root, tables)
        limit, requested = self._limit(sql, root)
        rendered = root.sql(dialect=self.dialect, comments=False)
        return GuardedQuery(sql=rendered, tables=sorted(tables), limit=limit, requested_limit=requested,
                            row_cap=self.max_rows)

    def _check_columns(self, sql: str, root: exp.Expression, tables: set[str]) -> None:
        try:
            qualify(
                root.copy(),
                schema=self._mapping,
                dialect=self.dialect,
                validate_qualify_columns=True,
                quote_identifiers=False,
                identify=False,
            )
        except (OptimizeError, SchemaError) as exc:
            msg = str(exc).split(". Line:")[0]
            listing = "; ".join(f"{t}({', '.join(self.schema[t])})" for t in sorted(tables)) or "(no tables)"
            raise self._refuse(sql, "column", f"{msg}; the tables used have the columns: {listing}") from None
        except (SqlglotError, RecursionError, KeyError, ValueError, AttributeError, TypeError) as exc:
            raise self._refuse(sql, "column", f"the columns could not be checked ({type(exc).__name__}: {exc})") from None

    def _limit(self, sql: str, root: exp.Expression) -> tuple[int, int | None]:
        """Put the row cap on the outermost query; return (limit used, limit asked for)."""
        requested: int | None = None
        node = root.args.get("limit")
        if node is not None:
            value = node.expression if isinstance(node, exp.Limit) else None
            if isinstance(value, exp.Literal) and not value.is_string and str(value.this).isdigit():
                requested = int(value.this)
            else:
                raise self._refuse(sql, "limit", "LIMIT must be a plain whole number")
        limit = requested if requested is not None and requested <= self.max_rows else self.max_rows + 1
        root.set("limit", exp.Limit(expression=exp.Literal.number(limit)))
        return limit, requested
