"""Tests of experts.database.DatabaseExpert against the bundled Chinook copy (read-only)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from experts.database import CHINOOK_PATH, DatabaseArgs, DatabaseExpert
from mrkl.errors import ArgumentError, ExpertError


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_SHA_BEFORE = _sha256(CHINOOK_PATH)


@pytest.fixture(scope="module")
def db():
    ex = DatabaseExpert()
    yield ex
    ex.close()


def run(ex, args):
    return ex.run(ex.parse_args(args))


# -- definition --------------------------------------------------------------------


def test_definition_and_description(db):
    assert db.name == "database"
    assert db.Args is DatabaseArgs
    d = db.description
    assert d.startswith("Music store database (Chinook)")
    assert "Artist(ArtistId, Name)" in d
    assert "Album(AlbumId, Title, ArtistId→Artist)" in d
    assert "PlaylistTrack(PlaylistId→Playlist, TrackId→Track)" in d
    assert len(d) < 2000
    assert set(db.table_names()) == {
        "Album", "Artist", "Customer", "Employee", "Genre", "Invoice",
        "InvoiceLine", "MediaType", "Playlist", "PlaylistTrack", "Track",
    }
    desc = db.describe()
    json.dumps(desc)  # JSON-compatible
    assert len(desc["examples"]) >= 8


def test_bad_constructor_values():
    with pytest.raises(ValueError):
        DatabaseExpert(max_rows=0)
    with pytest.raises(ValueError):
        DatabaseExpert(timeout_s=0)


def test_missing_database_file(tmp_path):
    with pytest.raises(ExpertError, match="cannot open database"):
        DatabaseExpert(f"sqlite:///file:{tmp_path}/nope.sqlite?mode=ro&uri=true")


@pytest.mark.parametrize("i", range(len(DatabaseExpert.examples)))
def test_every_routing_example_validates_and_runs(db, i):
    ex = db.examples[i]
    args = db.parse_args(ex.args)
    res = db.run(args)
    assert res.text
    assert res.sources and res.sources[0].startswith("database:")
    assert isinstance(res.value, (int, float)) or res.value, ex.question  # a number or a non-empty list
    json.dumps(res.data)
    json.dumps(res.value)


# -- answers with real values ---------------------------------------------------------


def test_count_across_join(db):
    res = run(db, {"table": "Track", "aggregate": "count", "where": {"Album.Title": "Let There Be Rock"}})
    assert res.value == 8
    assert res.text == "8"
    assert res.sources == ["database:Track", "database:Album"]
    assert res.data["row_count"] == 1
    assert "JOIN" in res.data["sql"] and "Let There Be Rock" in res.data["sql"]


def test_customers_in_brazil(db):
    res = run(db, {"table": "Customer", "columns": ["FirstName", "LastName"], "where": {"Country": "Brazil"}})
    names = {f"{r['FirstName']} {r['LastName']}" for r in res.value}
    assert names == {"Luís Gonçalves", "Eduardo Martins", "Alexandre Rocha", "Roberto Almeida", "Fernanda Ramos"}
    assert "Roberto Almeida" in res.text.splitlines()
    assert res.data["columns"] == ["FirstName", "LastName"]
    assert res.data["row_count"] == 5
    assert res.sources == ["database:Customer"]


def test_artist_with_most_albums(db):
    res = run(db, {"table": "Album", "columns": ["Artist.Name"], "aggregate": "count", "group_by": ["Artist.Name"],
                   "order_by": "value", "descending": True, "limit": 1})
    assert res.value == [{"Artist.Name": "Iron Maiden", "count": 21}]
    assert "Iron Maiden" in res.text and "21" in res.text


def test_sum_per_country(db):
    res = run(db, {"table": "Invoice", "columns": ["BillingCountry"], "aggregate": "sum", "aggregate_column": "Total",
                   "group_by": ["BillingCountry"], "order_by": "value", "descending": True, "limit": 3})
    assert [r["BillingCountry"] for r in res.value] == ["USA", "Canada", "France"]
    assert res.value[0]["sum"] == pytest.approx(523.06)


def test_scalar_aggregates(db):
    assert run(db, {"table": "Track", "aggregate": "count"}).value == 3503
    assert run(db, {"table": "Invoice", "aggregate": "sum", "aggregate_column": "Total"}).value == pytest.approx(2328.6)
    assert run(db, {"table": "Track", "aggregate": "max", "aggregate_column": "Milliseconds"}).value == 5286953
    assert run(db, {"table": "Track", "aggregate": "min", "aggregate_column": "UnitPrice"}).value == pytest.approx(0.99)
    # count of a column counts distinct values
    assert run(db, {"table": "Customer", "aggregate": "count", "aggregate_column": "Country"}).value == 24
    # a single column with sum/avg and no aggregate_column is taken as the aggregate column
    assert run(db, {"table": "Invoice", "columns": ["Total"], "aggregate": "sum"}).value == pytest.approx(2328.6)


def test_longest_track_and_filters(db):
    res = run(db, {"table": "Track", "columns": ["Name", "Milliseconds"], "order_by": "Milliseconds",
                   "descending": True, "limit": 1})
    assert res.value == [{"Name": "Occupation / Precipice", "Milliseconds": 5286953}]
    res = run(db, {"table": "Track", "aggregate": "count",
                   "filters": [{"column": "Milliseconds", "op": ">", "value": 300000}]})
    assert res.value == 1069
    # numbers written as strings are coerced to the column type
    res = run(db, {"table": "Track", "aggregate": "count",
                   "filters": [{"column": "Milliseconds", "op": ">", "value": "300000"}]})
    assert res.value == 1069


def test_contains_starts_with_like_in(db):
    res = run(db, {"table": "Artist", "filters": [{"column": "Name", "op": "contains", "value": "ZEPPELIN"}]})
    assert sorted(r["Name"] for r in res.value) == ["Dread Zeppelin", "Led Zeppelin"]
    res = run(db, {"table": "Artist", "filters": [{"column": "Name", "op": "starts_with", "value": "iron"}]})
    assert [r["Name"] for r in res.value] == ["Iron Maiden"]
    res = run(db, {"table": "Artist", "filters": [{"column": "Name", "op": "like", "value": "ac_dc"}]})
    assert [r["Name"] for r in res.value] == ["AC/DC"]
    res = run(db, {"table": "Genre", "filters": [{"column": "Name", "op": "in", "value": ["jazz", "BLUES"]}]})
    assert sorted(r["Name"] for r in res.value) == ["Blues", "Jazz"]
    # a list with "=" means "in"
    res = run(db, {"table": "Genre", "aggregate": "count", "filters": [{"column": "Name", "value": ["Jazz", "Blues"]}]})
    assert res.value == 2


def test_contains_escapes_wildcards(db):
    # '%' and '_' in contains are literal text, not wildcards
    res = run(db, {"table": "Track", "filters": [{"column": "Name", "op": "contains", "value": "%"}]})
    assert sorted(r["Name"] for r in res.value) == [".07%", "100% HardCore"]
    res = run(db, {"table": "Track", "aggregate": "count", "filters": [{"column": "Name", "op": "contains", "value": "_"}]})
    assert res.value == 0


def test_join_through_link_table_is_distinct(db):
    res = run(db, {"table": "Playlist", "columns": ["Name"], "where": {"Track.Name": "Enter Sandman"}})
    assert sorted(r["Name"] for r in res.value) == ["90’s Music", "Heavy Metal Classic", "Music"]
    assert res.sources == ["database:Playlist", "database:PlaylistTrack", "database:Track"]
    # counting the main table through a one-to-many join counts each row once
    res = run(db, {"table": "Album", "aggregate": "count", "where": {"Genre.Name": "Jazz"}})
    expected = sqlite3.connect(f"file:{CHINOOK_PATH}?mode=ro", uri=True).execute(
        "select count(distinct a.AlbumId) from Album a join Track t using(AlbumId) join Genre g using(GenreId) "
        "where g.Name='Jazz'").fetchone()[0]
    assert res.value == expected


def test_names_are_forgiving_and_case_insensitive(db):
    res = run(db, {"table": "tracks", "aggregate": "count", "where": {"album.title": "let there be rock"}})
    assert res.value == 8
    res = run(db, {"table": "CUSTOMERS", "columns": ["firstname", "last_name"], "where": {"country": "BRAZIL"}})
    assert len(res.value) == 5
    # a related table name alone means its name column; TableColumn run together works too
    res = run(db, {"table": "Album", "columns": ["Title"], "where": {"Artist": "ac/dc"}})
    assert {r["Title"] for r in res.value} == {"For Those About To Rock We Salute You", "Let There Be Rock"}
    res = run(db, {"table": "Album", "aggregate": "count", "where": {"ArtistName": "AC/DC"}})
    assert res.value == 2
    # synonyms in aggregate / op
    res = run(db, {"table": "Track", "aggregate": "COUNT", "filters": [{"column": "Milliseconds", "op": "gt", "value": 300000}]})
    assert res.value == 1069


def test_default_columns_are_name_like(db):
    res = run(db, {"table": "Customer", "where": {"Country": "Brazil"}, "limit": 1})
    assert res.data["columns"] == ["FirstName", "LastName"]
    res = run(db, {"table": "Artist", "limit": 1})
    assert res.data["columns"] == ["Name"]
    res = run(db, {"table": "InvoiceLine", "limit": 1})
    assert res.data["columns"] == ["InvoiceLineId", "InvoiceId", "TrackId", "UnitPrice", "Quantity"]


# -- errors ------------------------------------------------------------------------------


def test_unknown_table_lists_tables(db):
    with pytest.raises(ExpertError) as e:
        run(db, {"table": "Songs"})
    msg = str(e.value)
    assert "unknown table 'Songs'" in msg
    for t in ("Track", "Album", "Artist", "Genre"):
        assert t in msg
    with pytest.raises(ExpertError, match=r"unknown table 'Albun'; tables are: Album"):
        run(db, {"table": "Albun"})


def test_unknown_column(db):
    with pytest.raises(ExpertError) as e:
        run(db, {"table": "Track", "where": {"Foo": 1}})
    msg = str(e.value)
    assert "unknown column 'Foo' in table Track" in msg
    assert "TrackId" in msg and "Milliseconds" in msg
    with pytest.raises(ExpertError, match=r"unknown column 'Titel' in table Album; columns are: Title"):
        run(db, {"table": "Track", "columns": ["Album.Titel"]})


def test_bad_arguments(db):
    with pytest.raises(ArgumentError):
        db.parse_args({"table": "Track", "limit": 0})
    with pytest.raises(ArgumentError):
        db.parse_args({"table": "Track", "sql": "DROP TABLE Track"})
    with pytest.raises(ExpertError, match="needs aggregate_column"):
        run(db, {"table": "Track", "aggregate": "sum"})
    with pytest.raises(ExpertError, match="needs an aggregate"):
        run(db, {"table": "Track", "order_by": "value"})
    with pytest.raises(ExpertError, match="holds numbers"):
        run(db, {"table": "Track", "where": {"Milliseconds": "long"}})


def test_no_fk_path(tmp_path):
    path = tmp_path / "two.sqlite"
    con = sqlite3.connect(path)
    con.executescript("create table A (id integer primary key, name text); create table B (id integer primary key, name text);")
    con.close()
    ex = DatabaseExpert(f"sqlite:///{path}")
    with pytest.raises(ExpertError, match="not related"):
        run(ex, {"table": "A", "where": {"B.name": "x"}})
    ex.close()


# -- safety ---------------------------------------------------------------------------


def test_hostile_value_matches_nothing(db):
    res = run(db, {"table": "Track", "where": {"Name": "x'; DROP TABLE Track; --"}})
    assert res.value == [] and res.text == "No matching rows."
    assert run(db, {"table": "Track", "aggregate": "count"}).value == 3503


def test_percent_is_literal_in_equality(db):
    assert run(db, {"table": "Track", "where": {"Name": "%"}}).value == []
    res = run(db, {"table": "Track", "filters": [{"column": "Name", "op": "=", "value": "%"}]})
    assert res.value == []


def test_limit_and_max_rows(db):
    res = run(db, {"table": "Track"})
    assert res.data["row_count"] == 10 and res.data["truncated"] is True
    res = run(db, {"table": "Track", "limit": 1000})
    assert res.data["row_count"] == 1000
    assert res.text.splitlines()[-1] == "... (980 more)"
    assert len(res.text.splitlines()) == 21
    small = DatabaseExpert(max_rows=3)
    res = run(small, {"table": "Track", "limit": 50})
    assert res.data["row_count"] == 3
    assert "LIMIT 3" in res.data["sql"]
    small.close()


def test_write_is_impossible(db):
    with db.engine.connect() as conn:
        with pytest.raises(DBAPIError):
            conn.execute(text("INSERT INTO Genre (Name) VALUES ('Polka')"))
            conn.commit()


def test_timeout():
    slow = DatabaseExpert(timeout_s=1e-6)
    with pytest.raises(ExpertError, match="timed out"):
        run(slow, {"table": "Playlist", "aggregate": "count", "group_by": ["Name"], "where": {"Track.Composer": "nobody"}})
    slow.close()


def test_arun(db):
    res = asyncio.run(db.arun(db.parse_args({"table": "Genre", "aggregate": "count"})))
    assert res.value == 25


# -- custom URL ----------------------------------------------------------------------------


def test_custom_url_with_join(tmp_path):
    path = tmp_path / "shop.sqlite"
    con = sqlite3.connect(path)
    con.executescript(
        """
        create table maker (maker_id integer primary key, name text not null);
        create table gadget (gadget_id integer primary key, label text not null, price real,
                             maker_id integer references maker(maker_id));
        insert into maker values (1, 'Acme'), (2, 'Globex');
        insert into gadget values (1, 'Rocket', 100.5, 1), (2, 'Anvil', 20, 1), (3, 'Laser', 300, 2);
        """
    )
    con.commit()
    con.close()
    ex = DatabaseExpert(f"sqlite:///{path}", name="shop")
    assert ex.name == "shop"
    assert ex.description.startswith("SQL database with tables:")
    assert "gadget(gadget_id, label, price, maker_id→maker)" in ex.description
    assert ex.examples == []
    res = run(ex, {"table": "gadgets", "columns": ["label"], "where": {"maker.name": "acme"}, "order_by": "label"})
    assert [r["label"] for r in res.value] == ["Anvil", "Rocket"]
    assert res.sources == ["database:gadget", "database:maker"]
    res = run(ex, {"table": "maker", "columns": ["name"], "aggregate": "sum", "aggregate_column": "gadget.price",
                   "group_by": ["name"], "order_by": "value", "descending": True})
    assert res.value == [{"name": "Globex", "sum": 300}, {"name": "Acme", "sum": 120.5}]
    # the expert's connections refuse writes even when the URL is writable
    with ex.engine.connect() as conn, pytest.raises(DBAPIError):
        conn.execute(text("DELETE FROM gadget"))
    ex.close()
    assert sqlite3.connect(path).execute("select count(*) from gadget").fetchone()[0] == 3


def test_database_file_unchanged():
    # keep last in the file: every test above ran against the bundled copy
    assert _sha256(CHINOOK_PATH) == _SHA_BEFORE
    assert _SHA_BEFORE == "7651ba378ac2fcd0dfc3c66fb101f7a7eed3ba39a612ec642b96e20702061f15"
