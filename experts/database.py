"""A database expert: structured lookups over a relational database.

In MRKL terms (Karpas et al., 2022, "MRKL Systems", Sec. 2) the database is a
*discrete knowledge expert*: the router LM does not write SQL, it only fills a
small, flat JSON argument object (:class:`DatabaseArgs`); this module resolves
the names in it against the reflected schema, finds joins along foreign keys
and compiles a query with SQLAlchemy Core (``select()``, table and column
objects, bound parameters). Text coming from the model never becomes SQL text,
and only ``SELECT`` statements are executed.

The bundled database is the Chinook sample music store (``data/chinook.sqlite``,
MIT licence in ``data/CHINOOK_LICENSE.md``), opened read-only. Any SQLAlchemy
URL may replace it.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import re
import time
from collections import deque
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import (
    Column,
    Date,
    MetaData,
    String,
    Table,
    and_,
    cast,
    create_engine,
    event,
    func,
    literal,
    select,
    type_coerce,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url

from mrkl.errors import ExpertError
from mrkl.expert import Expert, ExpertResult, RoutingExample

__all__ = ["DatabaseExpert", "DatabaseArgs", "Filter", "CHINOOK_PATH", "CHINOOK_EXAMPLES", "create_readonly_engine"]

CHINOOK_PATH = Path(__file__).resolve().parent / "data" / "chinook.sqlite"
CHINOOK_SENTENCE = (
    "Music store database (Chinook): artists, albums, tracks, genres, playlists, "
    "customers, employees, invoices."
)

_Scalar = str | int | float | bool
_OPS = ("=", "!=", "<", "<=", ">", ">=", "like", "contains", "starts_with", "in")
_OP_SYNONYMS = {
    "==": "=", "eq": "=", "equals": "=", "is": "=",
    "<>": "!=", "ne": "!=", "not": "!=", "is not": "!=",
    "lt": "<", "le": "<=", "gt": ">", "ge": ">=",
    "startswith": "starts_with", "starts with": "starts_with", "prefix": "starts_with",
    "includes": "contains", "ilike": "like", "in_": "in",
}
_AGG_SYNONYMS = {"average": "avg", "mean": "avg", "total": "sum", "minimum": "min", "maximum": "max",
                 "number": "count", "none": None, "": None, "null": None}
_TEXT_LINES = 20
_AGG_WORDS = {"value", "count", "sum", "avg", "average", "min", "max", "total", "aggregate"}


# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------


def _as_list(v: Any) -> Any:
    if v is None:
        return []
    if isinstance(v, (str, dict)):
        return [v]
    return v


class Filter(BaseModel):
    """One comparison ``column op value`` (the common equality case goes in ``where``).

    ``like`` takes a SQL pattern (``%`` any text, ``_`` one character); ``contains``
    and ``starts_with`` take plain text (``%``/``_`` match literally); ``in`` takes a
    list. Text comparisons ignore case.
    """

    model_config = ConfigDict(extra="forbid")

    column: str = Field(description="column, or Table.Column of a related table")
    op: Literal["=", "!=", "<", "<=", ">", ">=", "like", "contains", "starts_with", "in"] = "="
    value: str | int | float | bool | list[str | int | float] | None

    @field_validator("op", mode="before")
    @classmethod
    def _op_synonyms(cls, v: Any) -> Any:
        if isinstance(v, str):
            low = v.strip().lower()
            return _OP_SYNONYMS.get(low, low)
        return v


class DatabaseArgs(BaseModel):
    """Arguments of :class:`DatabaseExpert`: a flat description of one ``SELECT``.

    Any column may be written ``Table.Column`` to reach a related table; joins
    follow foreign keys automatically. Names ignore case, ``_`` and plural ``s``.
    """

    model_config = ConfigDict(extra="forbid")

    table: str = Field(description="main table")
    columns: list[str] = Field(default=[], description="columns to show; [] = the table's name column(s)")
    where: dict[str, _Scalar | None] = Field(default={}, description="equality filters {column: value}")
    filters: list[Filter] = Field(default=[], description="other comparisons")
    aggregate: Literal["count", "sum", "avg", "min", "max"] | None = None
    aggregate_column: str | None = Field(default=None, description="column for sum/avg/min/max")
    group_by: list[str] = []
    order_by: str | None = Field(default=None, description='a column, or "value" (the aggregate)')
    descending: bool = False
    limit: int = Field(10, ge=1, le=1000)

    @field_validator("columns", "group_by", "filters", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return _as_list(v)

    @field_validator("where", mode="before")
    @classmethod
    def _none_where(cls, v: Any) -> Any:
        return {} if v is None else v

    @field_validator("aggregate", mode="before")
    @classmethod
    def _agg_synonyms(cls, v: Any) -> Any:
        if isinstance(v, str):
            low = v.strip().lower()
            return _AGG_SYNONYMS.get(low, low)
        return v


# ---------------------------------------------------------------------------
# Routing examples (Chinook)
# ---------------------------------------------------------------------------

CHINOOK_EXAMPLES: list[RoutingExample] = [
    RoutingExample(
        "How many tracks are in the album Let There Be Rock?",
        {"table": "Track", "aggregate": "count", "where": {"Album.Title": "Let There Be Rock"}},
    ),
    RoutingExample(
        "Which customers live in Brazil?",
        {"table": "Customer", "columns": ["FirstName", "LastName"], "where": {"Country": "Brazil"}},
    ),
    RoutingExample(
        "Which artist has the most albums?",
        {"table": "Album", "columns": ["Artist.Name"], "aggregate": "count", "group_by": ["Artist.Name"],
         "order_by": "value", "descending": True, "limit": 1},
    ),
    RoutingExample(
        "What are the total sales per country?",
        {"table": "Invoice", "columns": ["BillingCountry"], "aggregate": "sum", "aggregate_column": "Total",
         "group_by": ["BillingCountry"], "order_by": "value", "descending": True, "limit": 50},
    ),
    RoutingExample(
        "What is the longest track?",
        {"table": "Track", "columns": ["Name", "Milliseconds"], "order_by": "Milliseconds",
         "descending": True, "limit": 1},
    ),
    RoutingExample(
        "How many tracks are longer than 5 minutes?",
        {"table": "Track", "aggregate": "count",
         "filters": [{"column": "Milliseconds", "op": ">", "value": 300000}]},
    ),
    RoutingExample(
        "Which tracks have 'love' in their name?",
        {"table": "Track", "columns": ["Name"], "filters": [{"column": "Name", "op": "contains", "value": "love"}]},
    ),
    RoutingExample(
        "List the albums by AC/DC.",
        {"table": "Album", "columns": ["Title"], "where": {"Artist.Name": "AC/DC"}},
    ),
    RoutingExample(
        "How many tracks are in the Jazz genre?",
        {"table": "Track", "aggregate": "count", "where": {"Genre.Name": "Jazz"}},
    ),
    RoutingExample(
        "What is the average track length in milliseconds?",
        {"table": "Track", "aggregate": "avg", "aggregate_column": "Milliseconds"},
    ),
    RoutingExample(
        "What is the most expensive track price?",
        {"table": "Track", "aggregate": "max", "aggregate_column": "UnitPrice"},
    ),
    RoutingExample(
        "Which genre has the most tracks?",
        {"table": "Track", "columns": ["Genre.Name"], "aggregate": "count", "group_by": ["Genre.Name"],
         "order_by": "value", "descending": True, "limit": 1},
    ),
    RoutingExample(
        "Which artists have a name starting with 'The'?",
        {"table": "Artist", "columns": ["Name"], "filters": [{"column": "Name", "op": "starts_with", "value": "The "}],
         "limit": 50},
    ),
    RoutingExample(
        "Which playlists contain the track Enter Sandman?",
        {"table": "Playlist", "columns": ["Name"], "where": {"Track.Name": "Enter Sandman"}},
    ),
    RoutingExample(
        "How many customers does each support employee have?",
        {"table": "Customer", "columns": ["Employee.FirstName", "Employee.LastName"], "aggregate": "count",
         "group_by": ["Employee.FirstName", "Employee.LastName"], "order_by": "value", "descending": True},
    ),
    RoutingExample("How many playlists are there?", {"table": "Playlist", "aggregate": "count"}),
    RoutingExample(
        "How many customers live in Germany?",
        {"table": "Customer", "aggregate": "count", "where": {"Country": "Germany"}},
    ),
    RoutingExample(
        "How many albums does Iron Maiden have?",
        {"table": "Album", "aggregate": "count", "where": {"Artist.Name": "Iron Maiden"}},
    ),
    RoutingExample(
        "Which employees live in Calgary?",
        {"table": "Employee", "columns": ["FirstName", "LastName"], "where": {"City": "Calgary"}},
    ),
]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _variants(n: str) -> list[str]:
    """Normalised spellings to try for a name: itself, singulars, plural."""
    out = [n]
    if n.endswith("ies") and len(n) > 4:
        out.append(n[:-3] + "y")
    if n.endswith("es") and len(n) > 3:
        out.append(n[:-2])
    if n.endswith("s") and len(n) > 2:
        out.append(n[:-1])
    out.append(n + "s")
    return out


def _ranked(wanted: str, names: list[str]) -> list[str]:
    """All ``names``, the closest to ``wanted`` first (difflib), then the rest in order."""
    by_norm = {_norm(n): n for n in names}
    close = difflib.get_close_matches(_norm(wanted), list(by_norm), n=len(names), cutoff=0.5)
    first = [by_norm[c] for c in close]
    return first + [n for n in names if n not in first]


def _python_type(col: Any) -> type | None:
    try:
        return col.type.python_type
    except (NotImplementedError, AttributeError):
        return None


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return round(v, 10)
    if isinstance(v, Decimal):
        f = float(v)
        return int(f) if v == v.to_integral_value() and v.as_tuple().exponent >= 0 else round(f, 10)
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(v))} bytes>"
    return str(v)


def _fmt(v: Any) -> str:
    if v is None:
        return "(none)"
    if isinstance(v, float):
        if v.is_integer():
            return str(int(v))
        return f"{v:.2f}".rstrip("0").rstrip(".") if abs(v) >= 1 else f"{v:.4g}"
    return str(v)


def _fmt_secs(s: float) -> str:
    return f"{s:g}"


class _Timeout(Exception):
    pass


# ---------------------------------------------------------------------------
# The expert
# ---------------------------------------------------------------------------


class DatabaseExpert(Expert):
    """Answer questions from a relational database (MRKL discrete knowledge expert).

    The router fills :class:`DatabaseArgs`; :meth:`run` resolves table and column
    names against the reflected schema (case-insensitive, ignoring ``_`` and
    plural ``s``), joins related tables along the shortest foreign-key path,
    compiles a ``SELECT`` with SQLAlchemy Core and runs it with a row cap and a
    statement timeout. Karpas et al. (2022), "MRKL Systems", Sec. 2.

    Args:
        url: a SQLAlchemy database URL; ``None`` opens the bundled Chinook database
            read-only (``sqlite:///file:...?mode=ro&uri=true``).
        name: expert name the router uses.
        description: overrides the generated description (one sentence and a
            compact schema listing ``Table(Col, FkCol→Other, ...)``).
        max_rows: hard cap on rows returned, whatever ``limit`` asks for.
        timeout_s: statement timeout (SQLite: progress handler; PostgreSQL:
            ``SET LOCAL statement_timeout``; other dialects: none).
        examples: routing examples; default the Chinook examples for the bundled
            database, none for another URL.

    Raises:
        ValueError: ``max_rows`` < 1 or ``timeout_s`` <= 0.
        ExpertError: the database cannot be opened or has no tables.

    Attributes:
        engine: the SQLAlchemy engine from :func:`create_readonly_engine` (read-only connections).
        metadata: the reflected schema.
    """

    name: ClassVar[str] = "database"
    description: ClassVar[str] = "SQL database lookup."
    Args: ClassVar[type[BaseModel]] = DatabaseArgs
    examples: ClassVar[list[RoutingExample]] = CHINOOK_EXAMPLES
    answer_template: ClassVar[str | None] = None

    def __init__(
        self,
        url: str | None = None,
        *,
        name: str = "database",
        description: str | None = None,
        max_rows: int = 1000,
        timeout_s: float = 5.0,
        examples: list[RoutingExample] | None = None,
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.name = name  # type: ignore[misc]
        self.max_rows = int(max_rows)
        self.timeout_s = float(timeout_s)
        bundled = url is None
        if bundled:
            url = f"sqlite:///file:{quote(str(CHINOOK_PATH), safe='/')}?mode=ro&uri=true"
        try:
            self.engine: Engine = create_readonly_engine(url)
        except (sa_exc.SQLAlchemyError, ValueError, ImportError) as exc:
            raise ExpertError(f"cannot open database: {exc}") from exc
        self._dialect = self.engine.dialect.name
        self.metadata = MetaData()
        try:
            self.metadata.reflect(bind=self.engine)
        except sa_exc.SQLAlchemyError as exc:
            shown = self.engine.url.render_as_string(hide_password=True)
            raise ExpertError(f"cannot open database {shown}: {exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}") from exc
        if not self.metadata.tables:
            raise ExpertError(f"database {self.engine.url.render_as_string(hide_password=True)} has no tables")
        self._tables: list[Table] = list(self.metadata.sorted_tables)
        self._graph = self._fk_graph()
        self._bfs_cache: dict[str, dict[str, tuple[Table | None, Any, bool, int]]] = {}
        self.description = description or self._describe(bundled)  # type: ignore[misc]
        self.examples = list(examples) if examples is not None else (list(CHINOOK_EXAMPLES) if bundled else [])  # type: ignore[misc]
        super().__init__()

    # -- schema ----------------------------------------------------------------
    def _fk_graph(self) -> dict[str, list[tuple[Table, Any, bool]]]:
        """Undirected FK graph: table → [(neighbour, constraint, neighbour_is_child)]."""
        graph: dict[str, list[tuple[Table, Any, bool]]] = {t.name: [] for t in self._tables}
        for child in self._tables:
            for fk in sorted(child.foreign_key_constraints, key=lambda c: [e.parent.name for e in c.elements]):
                parent = fk.referred_table
                if parent is child or parent.name not in graph or self.metadata.tables.get(parent.key) is not parent:
                    continue
                graph[child.name].append((parent, fk, False))
                graph[parent.name].append((child, fk, True))
        return graph

    def _describe(self, bundled: bool) -> str:
        parts = []
        for t in self._tables:
            fk_target = {}
            for fk in t.foreign_key_constraints:
                if len(fk.elements) == 1:
                    fk_target[fk.elements[0].parent.name] = fk.referred_table.name
            cols = [f"{c.name}→{fk_target[c.name]}" if c.name in fk_target else c.name for c in t.columns]
            parts.append(f"{t.name}({', '.join(cols)})")
        schema = "Tables: " + "; ".join(parts) + "."
        if bundled:
            return f"{CHINOOK_SENTENCE} {schema}"
        return f"SQL database with tables: {', '.join(t.name for t in self._tables)}. {schema}"

    def table_names(self) -> list[str]:
        """Names of the reflected tables, parents before children."""
        return [t.name for t in self._tables]

    # -- name resolution -------------------------------------------------------
    def _resolve_table(self, name: str) -> Table:
        by_norm = {_norm(t.name): t for t in self._tables}
        for v in _variants(_norm(name)):
            if v in by_norm:
                return by_norm[v]
        valid = _ranked(name, self.table_names())
        raise ExpertError(f"unknown table '{name}'; tables are: {', '.join(valid)}")

    def _find_table(self, name: str) -> Table | None:
        try:
            return self._resolve_table(name)
        except ExpertError:
            return None

    @staticmethod
    def _find_column(table: Table, name: str) -> Column | None:
        by_norm = {_norm(c.name): c for c in table.columns}
        for v in _variants(_norm(name)):
            if v in by_norm:
                return by_norm[v]
        return None

    @staticmethod
    def _name_columns(table: Table) -> list[Column]:
        by_norm = {_norm(c.name): c for c in table.columns}
        for key in ("name", "title"):
            if key in by_norm:
                return [by_norm[key]]
        if "firstname" in by_norm and "lastname" in by_norm:
            return [by_norm["firstname"], by_norm["lastname"]]
        return []

    def _resolve_column(self, ref: str, main: Table) -> Column:
        """``Column`` or ``Table.Column`` → a column object (main table first)."""
        ref = str(ref).strip()
        if "." in ref:
            tname, cname = ref.rsplit(".", 1)
            table = self._resolve_table(tname.strip())
            col = self._find_column(table, cname.strip())
            if col is None and not cname.strip():
                names = self._name_columns(table)
                if len(names) == 1:
                    return names[0]
            if col is None:
                valid = _ranked(cname, [c.name for c in table.columns])
                raise ExpertError(f"unknown column '{cname.strip()}' in table {table.name}; columns are: {', '.join(valid)}")
            return col
        col = self._find_column(main, ref)
        if col is not None:
            return col
        n = _norm(ref)
        # "Artist" on Album → Artist.Name; "ArtistName" → Artist.Name
        other = self._find_table(ref)
        if other is not None and other is not main:
            names = self._name_columns(other)
            if len(names) == 1:
                return names[0]
        for t in self._tables:
            tn = _norm(t.name)
            if t is not main and n.startswith(tn) and len(n) > len(tn):
                col = self._find_column(t, n[len(tn):])
                if col is not None:
                    return col
        valid = _ranked(ref, [c.name for c in main.columns])
        raise ExpertError(
            f"unknown column '{ref}' in table {main.name}; columns are: {', '.join(valid)} "
            "(write Table.Column for a related table)"
        )

    # -- joins -----------------------------------------------------------------
    def _bfs(self, main: Table) -> dict[str, tuple[Table | None, Any, bool, int]]:
        """Shortest FK paths from ``main``: table → (previous table, constraint, fans out, order)."""
        if main.name in self._bfs_cache:
            return self._bfs_cache[main.name]
        seen: dict[str, tuple[Table | None, Any, bool, int]] = {main.name: (None, None, False, 0)}
        queue = deque([main])
        while queue:
            cur = queue.popleft()
            for nb, fk, nb_is_child in self._graph[cur.name]:
                if nb.name not in seen:
                    seen[nb.name] = (cur, fk, nb_is_child, len(seen))
                    queue.append(nb)
        self._bfs_cache[main.name] = seen
        return seen

    def _joins(self, main: Table, needed: list[Table]) -> tuple[Any, list[Table], bool]:
        """FROM clause joining ``needed`` tables to ``main``; also the tables in order and whether rows fan out."""
        tree = self._bfs(main)
        include: dict[str, Table] = {}
        for t in needed:
            if t is main:
                continue
            if t.name not in tree:
                raise ExpertError(
                    f"table {t.name} is not related to {main.name} by foreign keys; "
                    f"choose a main table that links to both"
                )
            cur: Table | None = t
            while cur is not None and cur is not main:
                include[cur.name] = cur
                cur = tree[cur.name][0]
        ordered = sorted(include.values(), key=lambda t: tree[t.name][3])
        from_: Any = main
        fans_out = False
        for t in ordered:
            _prev, fk, fanout, _ = tree[t.name]
            on = and_(*(el.parent == el.column for el in fk.elements))
            # many-to-one: LEFT OUTER keeps every row of the main table; one-to-many: INNER
            from_ = from_.join(t, on, isouter=not fanout)
            fans_out = fans_out or fanout
        return from_, [main, *ordered], fans_out

    # -- conditions ------------------------------------------------------------
    def _coerce(self, col: Column, value: Any, ref: str) -> Any:
        """Make ``value`` match the column's Python type where that is unambiguous."""
        pt = _python_type(col)
        if value is None or isinstance(value, bool):
            return value
        if pt is int and isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                try:
                    return float(value.strip())
                except ValueError:
                    raise ExpertError(f"column {ref} holds numbers; got {value!r}") from None
        if pt in (float, Decimal) and isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise ExpertError(f"column {ref} holds numbers; got {value!r}") from None
        if pt is str and isinstance(value, (int, float)):
            return str(value)
        if pt in (_dt.datetime, _dt.date):
            if isinstance(value, (int, float)):
                value = str(int(value))
            if self._dialect == "sqlite":
                return str(value)  # SQLite keeps dates as ISO text; compare as text
            try:
                d = _dt.datetime.fromisoformat(str(value))
            except ValueError:
                raise ExpertError(f"column {ref} holds dates; write them like 2012-01-31, got {value!r}") from None
            return d.date() if pt is _dt.date else d
        return value

    def _comparable(self, col: Column) -> Any:
        """The column as compared: SQLite date columns as text (values are ISO strings)."""
        if self._dialect == "sqlite" and _python_type(col) in (_dt.datetime, _dt.date):
            return type_coerce(col, String())
        return col

    def _condition(self, col: Column, ref: str, op: str, value: Any) -> Any:
        pt = _python_type(col)
        textual = pt is str
        if isinstance(value, list):
            if op == "=":
                op = "in"
            elif op == "!=":
                return ~self._condition(col, ref, "in", value)
            elif op != "in":
                raise ExpertError(f"operator '{op}' on {ref} needs one value, got a list")
        if op == "in":
            values = value if isinstance(value, list) else [value]
            if not values:
                raise ExpertError(f"operator 'in' on {ref} needs a non-empty list of values")
            values = [self._coerce(col, v, ref) for v in values]
            if textual:
                return func.lower(col).in_([func.lower(literal(str(v), String())) for v in values])
            return self._comparable(col).in_(values)
        if value is None:
            if op == "=":
                return col.is_(None)
            if op == "!=":
                return col.is_not(None)
            raise ExpertError(f"operator '{op}' on {ref} needs a value, got null")
        if op in ("like", "contains", "starts_with"):
            text_col = col if textual else cast(col, String())
            lowered = func.lower(text_col)
            pattern = func.lower(literal(str(value), String()))
            if op == "like":
                return lowered.like(pattern)
            escaped = re.sub(r"([/%_])", r"/\1", str(value))
            wrapped = f"%{escaped}%" if op == "contains" else f"{escaped}%"
            return lowered.like(func.lower(literal(wrapped, String())), escape="/")
        v = self._coerce(col, value, ref)
        if (
            op == "="
            and self._dialect == "sqlite"
            and pt is _dt.datetime
            and isinstance(v, str)
            and re.fullmatch(r"\d{4}-\d{2}-\d{2}", v)
        ):
            return func.date(col) == v
        if op == "=" and pt is _dt.datetime and isinstance(v, _dt.datetime) and str(value).strip().count(":") == 0:
            return cast(col, Date()) == v.date()
        if textual and isinstance(v, str) and op in ("=", "!="):
            left, right = func.lower(col), func.lower(literal(v, String()))
            return left == right if op == "=" else left != right
        target = self._comparable(col)
        if op == "=":
            return target == v
        if op == "!=":
            return target != v
        if op == "<":
            return target < v
        if op == "<=":
            return target <= v
        if op == ">":
            return target > v
        if op == ">=":
            return target >= v
        raise ExpertError(f"unknown operator '{op}'; use one of: {', '.join(_OPS)}")  # pragma: no cover

    # -- compile ---------------------------------------------------------------
    def build_query(self, args: DatabaseArgs | dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Compile arguments into a SQLAlchemy ``Select`` (not executed).

        Args:
            args: a :class:`DatabaseArgs` or a dict that validates against it.

        Returns:
            ``(select, info)`` where ``info`` has ``keys`` (output column names),
            ``tables`` (tables used, main first), ``scalar`` (one aggregate value
            expected) and ``limit`` (effective row limit).

        Raises:
            ArgumentError: a dict that does not validate.
            ExpertError: unknown table or column, no foreign-key path, a bad
                operator/value combination.
        """
        a: DatabaseArgs = self.parse_args(args)  # type: ignore[assignment]
        main = self._resolve_table(a.table)
        used: list[Table] = [main]

        def res(ref: str) -> Column:
            col = self._resolve_column(ref, main)
            if col.table not in used:
                used.append(col.table)  # type: ignore[arg-type]
            return col

        def key(col: Column) -> str:
            return col.name if col.table is main else f"{col.table.name}.{col.name}"  # type: ignore[union-attr]

        agg = a.aggregate
        col_refs = list(a.columns)
        agg_ref = a.aggregate_column
        if agg and agg != "count" and agg_ref is None and len(col_refs) == 1 and not a.group_by:
            agg_ref, col_refs = col_refs[0], []
        if agg and agg != "count" and agg_ref is None:
            raise ExpertError(f"aggregate '{agg}' needs aggregate_column (a numeric column of {main.name})")
        if [c.strip() for c in col_refs] == ["*"]:
            col_refs = []
            star = True
        else:
            star = False
        shown = [res(c) for c in col_refs]
        group = [res(c) for c in a.group_by]
        where = [(ref, res(ref), "=", v) for ref, v in a.where.items()]
        where += [(f.column, res(f.column), f.op, f.value) for f in a.filters]
        agg_col = res(agg_ref) if (agg and agg_ref) else None
        order_col = None
        order_value = False
        if a.order_by:
            word = _norm(a.order_by)
            if agg and word in _AGG_WORDS:
                order_value = True
            else:
                try:
                    order_col = res(a.order_by)
                except ExpertError:
                    if word in _AGG_WORDS:
                        raise ExpertError(
                            f"order_by '{a.order_by}' (the aggregate value) needs an aggregate; give a column instead"
                        ) from None
                    raise
                if agg and order_col is agg_col:
                    order_value, order_col = True, None

        from_, tables, fans_out = self._joins(main, used)
        conds = [self._condition(col, ref, op, v) for ref, col, op, v in where]

        limit = min(a.limit, self.max_rows)
        info: dict[str, Any] = {"tables": [t.name for t in tables], "limit": limit}
        if agg:
            if agg == "count":
                pk = list(main.primary_key.columns)
                if agg_col is not None:
                    agg_expr = func.count(agg_col.distinct())
                elif fans_out and len(pk) == 1:
                    agg_expr = func.count(pk[0].distinct())
                else:
                    agg_expr = func.count()
            else:
                agg_expr = getattr(func, agg)(agg_col)
            group_cols: list[Column] = []
            for c in group + [c for c in shown if c is not agg_col]:
                if all(c is not g for g in group_cols):
                    group_cols.append(c)
            keys = [key(c) for c in group_cols]
            agg_key = agg if agg not in keys else "value"
            stmt = select(*[c.label(k) for c, k in zip(group_cols, keys)], agg_expr.label(agg_key))
            stmt = stmt.select_from(from_)
            if conds:
                stmt = stmt.where(*conds)
            info["keys"] = [*keys, agg_key]
            if group_cols:
                stmt = stmt.group_by(*group_cols)
                if order_value:
                    stmt = stmt.order_by(agg_expr.desc() if a.descending else agg_expr.asc())
                elif order_col is not None:
                    stmt = stmt.order_by(order_col.desc() if a.descending else order_col.asc())
                info["scalar"] = False
            else:
                info["scalar"] = True
                info["limit"] = 1
            return stmt, info

        if not shown:
            shown = list(main.columns) if star else (self._name_columns(main) or list(main.columns))
        keys = [key(c) for c in shown]
        stmt = select(*[c.label(k) for c, k in zip(shown, keys)]).select_from(from_)
        if conds:
            stmt = stmt.where(*conds)
        if fans_out:
            stmt = stmt.distinct()
        if order_col is not None:
            stmt = stmt.order_by(order_col.desc() if a.descending else order_col.asc())
        info.update(keys=keys, scalar=False)
        return stmt, info

    # -- execute ---------------------------------------------------------------
    def _arm_timeout(self, conn: Connection, seconds: float | None = None) -> Any:
        """Start the statement timeout (``seconds``, default ``timeout_s``); returns a function that disarms it and says if it fired."""
        seconds = self.timeout_s if seconds is None else seconds
        if self._dialect == "sqlite":
            raw = conn.connection.dbapi_connection
            if raw is not None and hasattr(raw, "set_progress_handler"):
                deadline = time.monotonic() + seconds
                fired = [False]

                def handler() -> int:
                    if time.monotonic() > deadline:
                        fired[0] = True
                        return 1
                    return 0

                raw.set_progress_handler(handler, 1000)

                def disarm() -> bool:
                    raw.set_progress_handler(None, 1000)
                    return fired[0]

                return disarm
        elif self._dialect == "postgresql":
            # constants from our own configuration, not from model output
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(seconds * 1000))}")
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        return lambda: False

    def fetch(self, statement: Any, max_rows: int) -> tuple[list[str], list[Any]]:
        """Execute one statement read-only under the statement timeout; fetch at most ``max_rows`` rows.

        Args:
            statement: a SQLAlchemy executable, or SQL text (``str``) that is sent to the
                driver as is, without bound parameters (so ``%`` and ``:name`` stay literal).
                Text must already be checked (see :class:`experts.sql_guard.SQLGuard`).
            max_rows: the most rows fetched.

        Returns:
            ``(column names, rows)``.

        Raises:
            ExpertError: ``query timed out after N s``, or ``database error: ...`` (the
                driver's message). The transaction is always rolled back.
        """
        try:
            with self.engine.connect() as conn:
                disarm = self._arm_timeout(conn)
                timed_out = False
                try:
                    try:
                        if isinstance(statement, str):
                            result = conn.exec_driver_sql(statement, execution_options={"no_parameters": True})
                        else:
                            result = conn.execute(statement)
                        keys = list(result.keys())
                        rows = result.fetchmany(max_rows)
                    finally:
                        timed_out = disarm()
                except sa_exc.SQLAlchemyError:
                    if timed_out:
                        raise _Timeout() from None
                    raise
                finally:
                    conn.rollback()
        except _Timeout:
            raise ExpertError(f"query timed out after {_fmt_secs(self.timeout_s)} s") from None
        except sa_exc.DBAPIError as exc:
            msg = str(exc.orig) if exc.orig is not None else str(exc)
            if "statement timeout" in msg.lower() or "canceling statement" in msg.lower():
                raise ExpertError(f"query timed out after {_fmt_secs(self.timeout_s)} s") from None
            raise ExpertError(f"database error: {msg.strip()}") from None
        except sa_exc.SQLAlchemyError as exc:
            raise ExpertError(f"database error: {exc}") from None
        return keys, rows

    def _display_sql(self, stmt: Any) -> str:
        try:
            return str(stmt.compile(dialect=self.engine.dialect, compile_kwargs={"literal_binds": True}))
        except Exception:  # some types cannot be rendered literally; show placeholders
            return str(stmt.compile(dialect=self.engine.dialect))

    def run(self, args: BaseModel | dict[str, Any]) -> ExpertResult:
        """Run one lookup.

        Args:
            args: :class:`DatabaseArgs` (or a dict that validates against it).

        Returns:
            ExpertResult with ``value`` = the number for a single aggregate without
            grouping, else a list of row dicts (``Table.Column`` keys for related
            tables, the aggregate under its name, e.g. ``count``); ``text`` = the
            number, or one line per row (at most 20, then ``... (N more)``);
            ``sources`` = ``["database:Table", ...]``; ``data`` = ``sql`` (for display
            only), ``columns``, ``rows`` (lists), ``row_count``, ``truncated``.

        Raises:
            ArgumentError: a dict that does not validate.
            ExpertError: unknown names, no join path, a timeout, or a database error.
        """
        stmt, info = self.build_query(args)  # type: ignore[arg-type]
        limit = info["limit"]
        run_stmt = stmt if info["scalar"] else stmt.limit(limit + 1)
        shown_stmt = stmt if info["scalar"] else stmt.limit(limit)
        sql = self._display_sql(shown_stmt)
        _, rows = self.fetch(run_stmt, limit + 1)

        keys: list[str] = info["keys"]
        truncated = len(rows) > limit
        data_rows = [[_jsonable(v) for v in r] for r in rows[:limit]]
        sources = [f"database:{t}" for t in info["tables"]]
        data: dict[str, Any] = {
            "sql": sql,
            "columns": keys,
            "rows": data_rows,
            "row_count": len(data_rows),
            "truncated": truncated,
        }
        if info["scalar"]:
            value = data_rows[0][-1] if data_rows else None
            text = _fmt(value) if value is not None else "no value (no matching rows)"
            return ExpertResult(value=value, text=text, sources=sources, data=data)
        dict_rows = [dict(zip(keys, r)) for r in data_rows]
        return ExpertResult(value=dict_rows, text=self._rows_text(keys, data_rows), sources=sources, data=data)

    @staticmethod
    def _rows_text(keys: list[str], rows: list[list[Any]]) -> str:
        if not rows:
            return "No matching rows."
        # "FirstName LastName" reads best joined; anything else gets labels
        all_names = all(_norm(k.rsplit(".", 1)[-1]) in ("firstname", "middlename", "lastname") for k in keys)
        lines = []
        for r in rows[:_TEXT_LINES]:
            if len(keys) == 1 or all_names:
                lines.append(" ".join(_fmt(v) for v in r if v is not None) or "(none)")
            else:
                lines.append(" | ".join(f"{k}: {_fmt(v)}" for k, v in zip(keys, r)))
        more = len(rows) - _TEXT_LINES
        if more > 0:
            lines.append(f"... ({more} more)")
        return "\n".join(lines)

    def close(self) -> None:
        """Release the engine's pooled connections."""
        self.engine.dispose()


def create_readonly_engine(url: str | URL) -> Engine:
    """A SQLAlchemy engine whose connections cannot write (defence in depth under the checks).

    * SQLite files open as ``file:...?mode=ro`` URIs (an in-memory database stays as it is)
      and every connection gets ``PRAGMA query_only = ON``;
    * PostgreSQL sessions start with ``default_transaction_read_only = on`` (unless the
      URL sets its own ``options``); :meth:`DatabaseExpert._arm_timeout` also runs
      ``SET TRANSACTION READ ONLY`` in every transaction;
    * other dialects are opened as given.

    Args:
        url: a SQLAlchemy URL (text or ``sqlalchemy.engine.URL``).

    Raises:
        sqlalchemy.exc.ArgumentError, ValueError: a malformed URL.
        ImportError: the dialect's driver is not installed.
    """
    u = make_url(url)
    connect_args: dict[str, Any] = {}
    if u.get_backend_name() == "sqlite":
        db = u.database or ""
        if db and db != ":memory:" and not u.query.get("mode"):
            if not db.startswith("file:"):
                db = "file:" + quote(db, safe="/:")
            u = u.set(database=db).update_query_dict({"mode": "ro", "uri": "true"})
    elif u.get_backend_name() == "postgresql" and "options" not in u.query:
        connect_args["options"] = "-c default_transaction_read_only=on"
    engine = create_engine(u, connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_query_only)
    return engine


def _sqlite_query_only(dbapi_conn: Any, _record: Any) -> None:
    """Make every SQLite connection of the expert refuse writes (defence in depth)."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA query_only = ON")
    finally:
        cur.close()


if __name__ == "__main__":  # pragma: no cover - manual check
    ex = DatabaseExpert()
    print(ex.description)
    for e in ex.examples:
        r = ex.run(e.args)
        print("Q:", e.question)
        print(json.dumps(r.data["sql"]))
        print(r.text, "\n")
