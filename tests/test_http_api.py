"""Declarative HTTP API experts against a real HTTP server on 127.0.0.1.

The server (``http.server`` in a thread) answers with JSON in the real APIs'
formats (fixtures in ``tests/data/http``), and misbehaves on purpose for the
hostile paths. Tests named ``test_hostile_*`` each try hostile input (from the
user, the router or the server) and check it is refused or answered cleanly:
``pytest -k hostile tests/test_http_api.py`` counts them.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import ScriptedBackend, card_scorer
from experts.http_api import DATA_DIR, HTTPAPIExpert, HTTPExpertError, builtin_http_experts, load_http_experts
from mrkl import FALLBACK, MRKL
from mrkl.errors import ArgumentError
from router import LLMRouter

FIXTURES = Path(__file__).parent / "data" / "http"
FAST = {"timeout_s": 1.0, "deadline_s": 5.0, "backoff_s": 0.05, "retries": 2}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# ---------------------------------------------------------------------------
# the test server
# ---------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        app = self.server.app  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        app.log.append(
            {
                "method": self.command,
                "raw_path": parts.path,
                "query": parse_qs(parts.query, keep_blank_values=True),
                "headers": dict(self.headers),
                "body": body,
            }
        )
        route = app.routes.get(parts.path)
        if route is None:
            self.send_json({"message": "no such route"}, 404)
            return
        route(self)

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def send_json(self, obj, status=200, headers=None) -> None:
        self.send_bytes(json.dumps(obj).encode(), status, {"Content-Type": "application/json", **(headers or {})})

    def send_bytes(self, body: bytes, status=200, headers=None) -> None:
        self.send_response(status)
        headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        for k, v in headers.items():
            self.send_header(k, v)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep test output clean
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # a client that hung up is expected here
        pass


class App:
    """A server on 127.0.0.1: ``routes`` path → handler(request), ``log`` of requests received."""

    def __init__(self) -> None:
        self.routes: dict = {}
        self.log: list[dict] = []
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.app = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def paths(self) -> list[str]:
        return [r["raw_path"] for r in self.log]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def app():
    a = App()
    yield a
    a.close()


@pytest.fixture
def other_app():
    a = App()
    yield a
    a.close()


def json_route(obj_or_bytes, status=200, headers=None):
    body = obj_or_bytes if isinstance(obj_or_bytes, bytes) else json.dumps(obj_or_bytes).encode()
    return lambda h: h.send_bytes(body, status, headers)


def serve_weather(app: App) -> None:
    app.routes["/v1/search"] = json_route(fixture("open_meteo_geocoding_berlin.json"))
    app.routes["/v1/forecast"] = json_route(fixture("open_meteo_forecast_berlin.json"))


def shipped(name: str, app: App, **kw) -> HTTPAPIExpert:
    """A shipped definition with every base URL pointed at the test server."""
    expert = HTTPAPIExpert.from_file(DATA_DIR / f"{name}.yaml", env={}, **{**FAST, **kw})
    return HTTPAPIExpert.from_file(
        DATA_DIR / f"{name}.yaml", env={}, base_urls={k: app.url for k in expert.base_urls}, **{**FAST, **kw}
    )


def closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------
# the three shipped experts, in the real APIs' formats
# ---------------------------------------------------------------------------


def test_weather_geocodes_then_forecasts(app):
    serve_weather(app)
    expert = shipped("weather", app)
    result = expert.call({"location": "Berlin"})
    assert app.paths() == ["/v1/search", "/v1/forecast"]
    geo, forecast = app.log
    assert geo["query"]["name"] == ["Berlin"] and geo["query"]["count"] == ["1"]
    # the forecast is asked for the coordinates the geocoder returned
    assert forecast["query"]["latitude"] == ["52.52437"] and forecast["query"]["longitude"] == ["13.41053"]
    assert forecast["query"]["forecast_days"] == ["2"]
    assert result.text.startswith("Weather in Berlin, Land Berlin, Germany now: 4.3 °C, overcast, wind 14.8 km/h")
    assert "Today (2026-11-29): overcast, 1.2 to 5.6 °C, precipitation 0.0 mm (10% chance)" in result.text
    assert result.value["place"]["latitude"] == 52.52437
    assert result.sources[0].startswith(app.url + "/v1/search?name=Berlin")
    assert len(result.sources) == 2


def test_weather_tomorrow_and_a_place_with_a_country(app):
    serve_weather(app)
    result = shipped("weather", app).call({"location": "Berlin, Germany", "day": "tomorrow"})
    assert app.log[0]["query"]["name"] == ["Berlin"]  # the geocoder gets the name before the comma
    assert result.text == (
        "Weather in Berlin, Land Berlin, Germany Tomorrow (2026-11-30): slight rain, 3.4 to 7.1 °C, "
        "precipitation 4.2 mm (85% chance). (Open-Meteo)"
    )


def test_weather_unknown_place_is_a_clear_answer(app):
    app.routes["/v1/search"] = json_route(fixture("open_meteo_geocoding_empty.json"))
    expert = shipped("weather", app)
    result = expert.run(expert.parse_args({"location": "Qwxzzy"}))
    assert result.value is None
    assert result.text == 'No place called "Qwxzzy" was found by the Open-Meteo geocoder.'
    assert result.data["error"]["kind"] == "not_found"
    assert app.paths() == ["/v1/search"]  # no forecast asked for


def test_currency_converts_at_the_ecb_rate(app):
    app.routes["/v1/latest"] = json_route(fixture("frankfurter_latest_usd_eur.json"))
    expert = shipped("currency", app)
    result = expert.call({"amount": "1,250", "from_currency": "dollars", "to_currency": "eur"})
    assert app.log[0]["query"] == {"base": ["USD"], "symbols": ["EUR"]}
    assert result.text == "1,250 USD = 1,080.25 EUR (ECB reference rate 0.8642 on 2026-11-27, via Frankfurter)"
    assert result.value == {"date": "2026-11-27", "base": "USD", "rate": 0.8642}


def test_currency_on_a_past_date(app):
    app.routes["/v1/2020-03-02"] = json_route(fixture("frankfurter_2020-03-02_usd_eur.json"))
    result = shipped("currency", app).call({"amount": 1000, "from_currency": "USD", "to_currency": "EUR", "date": "2020-03-02"})
    assert app.paths() == ["/v1/2020-03-02"]
    assert "1,000 USD = 901.47 EUR" in result.text and "2020-03-02" in result.text


def test_currency_404_is_a_clear_answer(app):
    app.routes["/v1/latest"] = json_route(fixture("frankfurter_not_found.json"), status=404)
    expert = shipped("currency", app)
    result = expert.run(expert.parse_args({"from_currency": "USD", "to_currency": "ISK"}))
    assert result.text == "Frankfurter has no ECB rate from USD to ISK."


def test_currency_codes_outside_the_ecb_list_are_argument_errors():
    expert = HTTPAPIExpert.from_file(DATA_DIR / "currency.yaml", env={})
    with pytest.raises(ArgumentError, match="to_currency"):
        expert.parse_args({"from_currency": "USD", "to_currency": "BTC"})
    with pytest.raises(ArgumentError, match="amount"):
        expert.parse_args({"amount": -5, "from_currency": "USD", "to_currency": "EUR"})


def test_wikipedia_summary(app):
    app.routes["/api/rest_v1/page/summary/Alan_Turing"] = json_route(fixture("wikipedia_summary_alan_turing.json"))
    result = shipped("wikipedia", app).call({"title": "Alan Turing"})
    assert app.log[0]["headers"]["User-Agent"].startswith("mrkl-http-expert/")
    assert result.text.startswith(
        "Alan Turing (English computer scientist (1912–1954)): Alan Mathison Turing was an English mathematician"
    )
    assert result.sources[-1] == "https://en.wikipedia.org/wiki/Alan_Turing"


def test_wikipedia_follows_a_same_origin_redirect(app):
    # the REST API redirects a non-canonical title to the canonical one with a relative Location
    app.routes["/api/rest_v1/page/summary/alan_turing"] = lambda h: h.send_bytes(b"", 302, {"Location": "Alan_Turing"})
    app.routes["/api/rest_v1/page/summary/Alan_Turing"] = json_route(fixture("wikipedia_summary_alan_turing.json"))
    result = shipped("wikipedia", app).call({"title": "alan turing"})
    assert app.paths() == ["/api/rest_v1/page/summary/alan_turing", "/api/rest_v1/page/summary/Alan_Turing"]
    assert result.value["title"] == "Alan Turing"


def test_wikipedia_disambiguation_and_missing_page(app):
    app.routes["/api/rest_v1/page/summary/Mercury"] = json_route(fixture("wikipedia_summary_mercury_disambiguation.json"))
    app.routes["/api/rest_v1/page/summary/Qwxzzy_Plorb"] = json_route(fixture("wikipedia_not_found.json"), status=404)
    expert = shipped("wikipedia", app)
    assert expert.call({"title": "Mercury"}).text.startswith('"Mercury" may refer to several things on Wikipedia: Mercury commonly')
    missing = expert.run(expert.parse_args({"title": "Qwxzzy Plorb"}))
    assert missing.text == 'Wikipedia has no article titled "Qwxzzy Plorb".'


@pytest.mark.parametrize("name", ["weather", "currency", "wikipedia"])
def test_offline_each_shipped_expert_answers_could_not_reach(name):
    port = closed_port()
    base = HTTPAPIExpert.from_file(DATA_DIR / f"{name}.yaml", env={})
    expert = HTTPAPIExpert.from_file(
        DATA_DIR / f"{name}.yaml", env={}, base_urls={k: f"http://127.0.0.1:{port}" for k in base.base_urls}, **FAST
    )
    t0 = time.perf_counter()
    result = expert.run(expert.parse_args(expert.examples[0].args))
    assert time.perf_counter() - t0 < 3
    assert result.text.startswith(f"Could not reach 127.0.0.1:{port}: ")
    assert "(3 attempts)" in result.text  # 1 + 2 retries
    assert result.value is None and result.data["error"]["kind"] == "unreachable"


def test_base_urls_come_from_environment_variables(app):
    app.routes["/v1/latest"] = json_route(fixture("frankfurter_latest_usd_eur.json"))
    expert = HTTPAPIExpert.from_file(DATA_DIR / "currency.yaml", env={"MRKL_CURRENCY_API_URL": app.url}, **FAST)
    assert expert.base_urls == {"api": app.url}
    assert expert.allowed == {("http", "127.0.0.1", app.port)}  # the allow-list follows the override
    assert "0.86" in expert.call({"from_currency": "USD", "to_currency": "EUR"}).text


def test_shipped_definitions_load_and_their_patterns_parse_their_examples():
    experts = {e.name: e for e in builtin_http_experts(env={})}
    assert sorted(experts) == ["currency", "weather", "wikipedia"]
    parsed = 0
    for e in experts.values():
        assert 6 <= len(e.examples) <= 10
        for ex in e.examples:
            got = e.symbolic_args(ex.question)
            if got is not None:
                parsed += 1
                want = e.Args.model_validate(ex.args).model_dump(mode="json", exclude_none=True)
                if e.name != "wikipedia":  # wikipedia keeps the user's words ("black holes")
                    assert got == want, (ex.question, got, want)
    assert parsed >= 20
    assert experts["weather"].symbolic_args("what is the weather in Paris, France tomorrow?") == {
        "location": "Paris, France",
        "day": "tomorrow",
    }
    assert experts["currency"].symbolic_args("convert €20 to yen") == {"amount": 20.0, "from_currency": "EUR", "to_currency": "JPY"}
    assert experts["currency"].symbolic_args("convert 26.2 miles to km") is None  # not currencies
    assert experts["wikipedia"].symbolic_args("who was the Duke of Wellington?") == {"title": "the Duke of Wellington"}
    assert experts["weather"].symbolic_args("how many km is 26.2 miles") is None


# ---------------------------------------------------------------------------
# retries, timeouts, size cap
# ---------------------------------------------------------------------------


def test_a_500_is_retried_with_backoff_then_succeeds(app):
    calls = {"n": 0}

    def flaky(h):
        calls["n"] += 1
        if calls["n"] < 3:
            h.send_json({"message": "upstream hiccup"}, 500)
        else:
            h.send_bytes(fixture("frankfurter_latest_usd_eur.json"))

    app.routes["/v1/latest"] = flaky
    t0 = time.perf_counter()
    result = shipped("currency", app, backoff_s=0.1).call({"from_currency": "USD", "to_currency": "EUR"})
    elapsed = time.perf_counter() - t0
    assert calls["n"] == 3 and "0.86" in result.text
    assert elapsed >= 0.1 + 0.2  # backoff 0.1 s, then 0.2 s


def test_hostile_server_always_500_ends_after_bounded_retries(app):
    app.routes["/v1/latest"] = json_route({"message": "database on fire"}, status=500)
    expert = shipped("currency", app, retries=3)
    result = expert.run(expert.parse_args({"from_currency": "USD", "to_currency": "EUR"}))
    assert len(app.log) == 4  # 1 + 3 retries, then give up
    assert result.text == f"Could not get an answer from 127.0.0.1:{app.port}: HTTP 500 Internal Server Error (database on fire)."
    assert result.data["error"]["kind"] == "server_error"


def test_hostile_server_429_retry_after_is_honoured(app):
    calls = {"n": 0}

    def limited(h):
        calls["n"] += 1
        if calls["n"] == 1:
            h.send_json({"message": "slow down"}, 429, {"Retry-After": "1"})
        else:
            h.send_bytes(fixture("frankfurter_latest_usd_eur.json"))

    app.routes["/v1/latest"] = limited
    t0 = time.perf_counter()
    shipped("currency", app).call({"from_currency": "USD", "to_currency": "EUR"})
    assert calls["n"] == 2 and time.perf_counter() - t0 >= 1.0


def test_hostile_server_that_never_answers_times_out(app):
    app.routes["/v1/latest"] = lambda h: time.sleep(4)
    expert = shipped("currency", app, timeout_s=0.3, retries=1)
    t0 = time.perf_counter()
    result = expert.run(expert.parse_args({"from_currency": "USD", "to_currency": "EUR"}))
    assert time.perf_counter() - t0 < 2.0
    assert result.text.startswith(f"Could not reach 127.0.0.1:{app.port}: no answer within 0.3 s (ReadTimeout; 2 attempts)")


def test_hostile_server_that_drips_bytes_hits_the_deadline(app):
    def drip(h):
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", "1000")
        h.end_headers()
        for _ in range(100):
            h.wfile.write(b" ")
            h.wfile.flush()
            time.sleep(0.1)

    app.routes["/v1/latest"] = drip
    expert = shipped("currency", app, timeout_s=1.0, deadline_s=1.0)
    t0 = time.perf_counter()
    result = expert.run(expert.parse_args({"from_currency": "USD", "to_currency": "EUR"}))
    assert time.perf_counter() - t0 < 2.5
    assert result.data["error"]["kind"] == "timeout" and "did not finish within 1 s" in result.text


def test_hostile_huge_declared_response_is_refused_before_reading(app):
    def huge(h):
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(50_000_000))
        h.end_headers()
        h.wfile.write(b"{" * 1000)

    app.routes["/v1/latest"] = huge
    expert = shipped("currency", app, max_response_bytes=100_000)
    result = expert.run(expert.parse_args({"from_currency": "USD", "to_currency": "EUR"}))
    assert result.text == f"127.0.0.1:{app.port} sent a response of 50,000,000 bytes; the limit is 100,000."
    assert len(app.log) == 1  # a size problem is not retried


def test_hostile_huge_streamed_response_stops_reading_at_the_cap(app):
    sent = {"bytes": 0}

    def stream(h):
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"[" + b"1," * 32_000 + b"1]"
        try:
            for _ in range(1000):  # 64 MB if nobody stops it
                h.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent["bytes"] += len(chunk)
        except OSError:
            pass

    app.routes["/v1/latest"] = stream
    expert = shipped("currency", app, max_response_bytes=200_000)
    result = expert.run(expert.parse_args({"from_currency": "USD", "to_currency": "EUR"}))
    assert result.text == f"127.0.0.1:{app.port} sent more than 200,000 bytes; stopped reading."
    time.sleep(0.3)
    assert sent["bytes"] < 20_000_000  # the client hung up long before the end


def test_hostile_gzip_bomb_is_capped_after_decoding(app):
    bomb = gzip.compress(b"0" * 20_000_000)
    assert len(bomb) < 100_000
    app.routes["/v1/latest"] = json_route(bomb, headers={"Content-Encoding": "gzip"})
    expert = shipped("currency", app, max_response_bytes=1_000_000)
    result = expert.run(expert.parse_args({"from_currency": "USD", "to_currency": "EUR"}))
    assert result.data["error"]["kind"] == "too_large" and "stopped reading" in result.text


def test_hostile_invalid_json_is_a_clear_answer(app):
    app.routes["/v1/latest"] = json_route(b"<html><body>Service temporarily moved</body></html>", headers={"Content-Type": "text/html"})
    expert = shipped("currency", app)
    result = expert.run(expert.parse_args({"from_currency": "USD", "to_currency": "EUR"}))
    assert result.text.startswith(f"127.0.0.1:{app.port} sent a response that is not valid JSON (JSONDecodeError")
    assert result.data["error"]["kind"] == "bad_response"


def test_hostile_json_of_the_wrong_shape_is_not_found_not_a_crash(app):
    app.routes["/v1/search"] = json_route({"results": "banana"})
    expert = shipped("weather", app)
    result = expert.run(expert.parse_args({"location": "Berlin"}))
    assert result.text == 'No place called "Berlin" was found by the Open-Meteo geocoder.'


def test_hostile_template_syntax_in_the_server_response_is_shown_literally(app):
    geo = json.loads(fixture("open_meteo_geocoding_berlin.json"))
    geo["results"][0]["name"] = "{{ 7*7 }}{% for x in range(10**9) %}x{% endfor %}"
    app.routes["/v1/search"] = json_route(geo)
    app.routes["/v1/forecast"] = json_route(fixture("open_meteo_forecast_berlin.json"))
    result = shipped("weather", app).call({"location": "Berlin"})
    assert result.text.startswith("Weather in {{ 7*7 }}{% for x in range(10**9) %}x{% endfor %}, Land Berlin")


# ---------------------------------------------------------------------------
# hostile arguments: template injection, path traversal, query injection
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        "{{ 7*7 }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{% for i in range(99999999) %}x{% endfor %}",
        "{{ secrets }}{{ base }}",
    ],
)
def test_hostile_template_injection_in_args_is_sent_as_plain_text(app, location):
    app.routes["/v1/search"] = json_route(fixture("open_meteo_geocoding_empty.json"))
    expert = shipped("weather", app)
    t0 = time.perf_counter()
    result = expert.run(expert.parse_args({"location": location}))
    assert time.perf_counter() - t0 < 2
    assert app.log[0]["query"]["name"] == [location.split(",")[0].strip()]  # exactly what the user wrote
    assert result.text == f'No place called "{location}" was found by the Open-Meteo geocoder.'


@pytest.mark.parametrize(
    "title, raw_path",
    [
        ("../../../etc/passwd", "/api/rest_v1/page/summary/..%2F..%2F..%2Fetc%2Fpasswd"),
        ("..", "/api/rest_v1/page/summary/%2E%2E"),
        ("Foo?action=delete#x", "/api/rest_v1/page/summary/Foo%3Faction%3Ddelete%23x"),
        ("AC/DC", "/api/rest_v1/page/summary/AC%2FDC"),
    ],
)
def test_hostile_path_traversal_in_a_title_stays_one_path_segment(app, title, raw_path):
    expert = shipped("wikipedia", app)
    result = expert.run(expert.parse_args({"title": title}))
    assert app.log[0]["raw_path"] == raw_path
    assert app.log[0]["query"] == {"redirect": ["true"]}
    assert result.data["error"]["kind"] == "not_found"  # the test server has no such page


def test_hostile_query_injection_stays_one_parameter_value(app):
    app.routes["/v1/search"] = json_route(fixture("open_meteo_geocoding_empty.json"))
    expert = shipped("weather", app)
    expert.run(expert.parse_args({"location": "Berlin&count=100&name=Paris"}))
    assert app.log[0]["query"]["name"] == ["Berlin&count=100&name=Paris"]
    assert app.log[0]["query"]["count"] == ["1"]


def test_hostile_oversized_argument_is_rejected_by_the_schema(app):
    expert = shipped("weather", app)
    with pytest.raises(ArgumentError, match="location"):
        expert.parse_args({"location": "x" * 10_000})
    with pytest.raises(ArgumentError, match="day"):
        expert.parse_args({"location": "Berlin", "day": "next year"})
    assert app.log == []


# ---------------------------------------------------------------------------
# the host allow-list
# ---------------------------------------------------------------------------


def careless(app: App, **extra) -> HTTPAPIExpert:
    """A badly written definition that lets the argument choose the whole URL."""
    spec = {
        "name": "careless",
        "description": "Fetch any URL (a bad idea).",
        "args": {"url": {"type": "string", "max_length": 500}},
        "base_urls": {"api": app.url},
        "requests": [{"name": "get", "url": "{{ args.url }}"}],
        "answer": "{{ steps.get }}",
        **extra,
    }
    return HTTPAPIExpert(spec, env={}, **FAST)


def test_allowed_url_through_a_careless_definition_works(app):
    app.routes["/ok"] = json_route({"hello": "world"})
    assert careless(app).call({"url": f"{app.url}/ok"}).value == {"hello": "world"}


@pytest.mark.parametrize(
    "url_template, refused_host",
    [
        ("http://localhost:{port}/stolen", "localhost:{port}"),  # same server, a name not on the list
        ("http://127.0.0.1:{other}/stolen", "127.0.0.1:{other}"),  # another port
        ("http://127.0.0.1:{port}@localhost:{port}/stolen", "localhost:{port}"),  # userinfo trick
        ("https://127.0.0.1:{port}/stolen", "127.0.0.1:{port}"),  # another scheme is another origin
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),  # cloud metadata
    ],
)
def test_hostile_url_off_the_allow_list_is_refused_without_a_request(app, other_app, url_template, refused_host):
    url = url_template.format(port=app.port, other=other_app.port)
    with pytest.raises(HTTPExpertError) as err:
        careless(app).call({"url": url})
    assert err.value.kind == "refused"
    assert str(err.value).startswith(f"Refused to request {refused_host.format(port=app.port, other=other_app.port)}")
    assert f"may only contact 127.0.0.1:{app.port}" in str(err.value)
    assert app.log == [] and other_app.log == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "javascript:alert(1)", "gopher://x", "not a url"])
def test_hostile_non_http_scheme_is_refused(app, url):
    with pytest.raises(HTTPExpertError) as err:
        careless(app).call({"url": url})
    assert err.value.kind == "refused" and str(err.value).startswith("Refused to request")
    assert app.log == []


def test_hostile_redirect_off_the_allow_list_is_refused(app, other_app):
    app.routes["/v1/search"] = lambda h: h.send_bytes(b"", 302, {"Location": f"http://localhost:{app.port}/stolen"})
    app.routes["/v1/forecast"] = lambda h: h.send_bytes(b"", 307, {"Location": f"{other_app.url}/stolen"})
    expert = shipped("weather", app)
    with pytest.raises(HTTPExpertError) as err:
        expert.call({"location": "Berlin"})
    assert err.value.kind == "refused"
    assert str(err.value) == (
        f"Refused a redirect from 127.0.0.1:{app.port}: Refused to request localhost:{app.port}: "
        f"the Open-Meteo weather expert may only contact 127.0.0.1:{app.port}."
    )
    assert app.paths() == ["/v1/search"]  # '/stolen' was never requested
    # the orchestrator turns the refusal into a fallback with the reason in the trace
    backend = ScriptedBackend(card_scorer("weather"), outputs=['location": "Berlin"}'] * 2, chat_reply="no")
    answer = MRKL(experts=[expert], backend=backend, router=LLMRouter(backend)).ask("What's the weather in Berlin?")
    assert answer.expert == FALLBACK and "Refused a redirect" in answer.trace.fallback_reason
    assert "/stolen" not in app.paths()


def test_hostile_redirect_loop_gives_up(app):
    app.routes["/v1/search"] = lambda h: h.send_bytes(b"", 301, {"Location": "/v1/search"})
    expert = shipped("weather", app, max_redirects=3)
    result = expert.run(expert.parse_args({"location": "Berlin"}))
    assert len(app.log) == 4
    assert result.text == f"127.0.0.1:{app.port} redirected more than 3 times; gave up."


# ---------------------------------------------------------------------------
# secrets
# ---------------------------------------------------------------------------


def secret_spec(app: App) -> dict:
    return {
        "name": "secretive",
        "description": "An API that needs a key.",
        "args": {"q": {"type": "string"}, "lang": {"type": "string", "default": "en"}},
        "base_urls": {"api": app.url},
        "secrets": {"token": "MRKL_TEST_API_TOKEN"},
        "requests": [
            {
                "name": "search",
                "url": "{{ base.api }}/search",
                "params": {"q": "{{ args.q }}", "key": "{{ secrets.token }}"},
                "headers": {"Authorization": "Bearer {{ secrets.token }}", "Accept-Language": "{{ args.lang }}"},
                "extract": "hits",
            }
        ],
        "answer": "{{ steps.search | length }} hits",
    }


def test_secret_comes_from_the_environment_and_is_redacted(app):
    app.routes["/search"] = json_route({"hits": [1, 2, 3]})
    expert = HTTPAPIExpert(secret_spec(app), env={"MRKL_TEST_API_TOKEN": "s3cr3t-t0ken"}, **FAST)
    result = expert.call({"q": "cats"})
    assert result.text == "3 hits"
    assert app.log[0]["headers"]["Authorization"] == "Bearer s3cr3t-t0ken"
    assert app.log[0]["query"]["key"] == ["s3cr3t-t0ken"]
    assert "s3cr3t" not in json.dumps(result.sources) + json.dumps(result.data)
    assert result.sources == [f"{app.url}/search?q=cats&key=***"]


def test_hostile_missing_env_secret_is_a_clear_answer_and_sends_nothing(app):
    expert = HTTPAPIExpert(secret_spec(app), env={}, **FAST)
    result = expert.run(expert.parse_args({"q": "cats"}))
    assert result.text == (
        "The secretive expert needs the environment variable MRKL_TEST_API_TOKEN (its 'token' secret); set it and ask again."
    )
    assert result.data["error"]["kind"] == "config" and app.log == []


def test_hostile_secret_never_leaks_into_error_messages(app):
    app.routes["/search"] = lambda h: h.send_json({"message": f"bad key {h.path}"}, 401)
    expert = HTTPAPIExpert(secret_spec(app), env={"MRKL_TEST_API_TOKEN": "s3cr3t-t0ken"}, **FAST)
    with pytest.raises(HTTPExpertError) as err:
        expert.call({"q": "cats"})
    assert err.value.kind == "client_error"
    assert "s3cr3t" not in str(err.value) and "***" in str(err.value)
    assert str(err.value).startswith(f"127.0.0.1:{app.port} refused the request: HTTP 401 Unauthorized (bad key /search?")


@pytest.mark.parametrize("lang", ["en\r\nX-Injected: 1", "en\nHost: evil"])
def test_hostile_header_injection_line_breaks_become_spaces(app, lang):
    app.routes["/search"] = json_route({"hits": []})
    expert = HTTPAPIExpert(secret_spec(app), env={"MRKL_TEST_API_TOKEN": "t"}, **FAST)
    expert.call({"q": "cats", "lang": lang})  # the declared schema collapses whitespace
    headers = app.log[0]["headers"]
    assert headers["Accept-Language"] == " ".join(lang.split())
    assert "X-Injected" not in headers and headers["Host"] == f"127.0.0.1:{app.port}"


@pytest.mark.parametrize("lang", ["en\r\nX-Injected: 1", "en\nHost: evil", "en\x00"])
def test_hostile_header_injection_is_refused_even_with_a_raw_args_model(app, lang):
    from pydantic import BaseModel

    class RawArgs(BaseModel):  # a Python caller's own model, which does not normalise
        q: str
        lang: str = "en"

    expert = HTTPAPIExpert(secret_spec(app), args_model=RawArgs, env={"MRKL_TEST_API_TOKEN": "t"}, **FAST)
    with pytest.raises(HTTPExpertError) as err:
        expert.call({"q": "cats", "lang": lang})
    assert err.value.kind == "refused" and "line break or NUL" in str(err.value)
    assert app.log == []


def test_hostile_post_is_not_retried_after_it_reached_the_server(app):
    app.routes["/submit"] = json_route({"message": "oops"}, status=503)
    spec = {
        "name": "poster",
        "description": "Post a note.",
        "args": {"text": {"type": "string"}},
        "base_urls": {"api": app.url},
        "requests": [{"name": "post", "method": "POST", "url": "{{ base.api }}/submit", "json": {"note": "{{ args.text }}", "n": 1}}],
        "answer": "ok",
    }
    expert = HTTPAPIExpert(spec, env={}, **FAST)
    result = expert.run(expert.parse_args({"text": 'say "hi" {{ 1+1 }}'}))
    assert len(app.log) == 1 and json.loads(app.log[0]["body"]) == {"note": 'say "hi" {{ 1+1 }}', "n": 1}
    assert result.data["error"]["kind"] == "server_error"


# ---------------------------------------------------------------------------
# definitions: Python, JSON and YAML; bad definitions fail at load time
# ---------------------------------------------------------------------------


def test_a_definition_in_python_with_its_own_args_model(app):
    from pydantic import BaseModel, Field

    class Args(BaseModel):
        word: str = Field(..., max_length=40)

    app.routes["/define"] = json_route([{"word": "ephemeral", "meanings": [{"definition": "lasting a short time"}]}])
    expert = HTTPAPIExpert(
        {
            "name": "dictionary",
            "description": "Define an English word.",
            "base_urls": {"api": app.url},
            "requests": [{"name": "entry", "url": "{{ base.api }}/define", "params": {"w": "{{ args.word }}"},
                          "extract": "[0].meanings[0].definition"}],
            "answer": "{{ args.word }}: {{ steps.entry }}",
            "examples": [{"question": "What does ephemeral mean?", "args": {"word": "ephemeral"}}],
        },
        args_model=Args,
        env={},
    )
    assert expert.Args is Args
    assert expert.call({"word": "ephemeral"}).text == "ephemeral: lasting a short time"


def test_load_http_experts_reads_json_and_yaml(tmp_path, app):
    (tmp_path / "ping.json").write_text(json.dumps({
        "name": "ping", "description": "Ping the server.", "base_urls": {"api": "https://example.org"},
        "requests": [{"name": "p", "url": "{{ base.api }}/ping", "extract": "status"}], "answer": "{{ steps.p }}",
    }))
    (tmp_path / "notes.txt").write_text("ignored")
    app.routes["/ping"] = json_route({"status": "pong"})
    [ping] = load_http_experts(tmp_path, base_urls={"ping": {"api": app.url}}, env={})
    assert ping.call({}).text == "pong"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"answer": "{{ unclosed"}, "'bad' answer: invalid jinja2 template"),
        ({"requests": [{"name": "r", "url": "{{ base.api }}", "extract": "a[?"}]}, "invalid JMESPath expression"),
        ({"base_urls": {"api": "file:///etc"}}, "must be an http:// or https:// URL"),
        ({"secrets": {"k": "NOT AN ENV NAME"}}, "is not an environment variable name"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
        ({"requests": []}, "requests: List should have at least 1 item"),
        ({"examples": [{"question": "q", "args": {"nope": 1}}]}, "routing example 'q' has invalid args"),
        ({"patterns": ["(unclosed"]}, "invalid pattern"),
        ({"requests": [{"name": "r", "url": "{{ base.api }}"}, {"name": "r", "url": "{{ base.api }}"}]}, "request names must be unique"),
    ],
)
def test_bad_definitions_fail_at_load_time(change, message):
    spec = {
        "name": "bad",
        "description": "A definition.",
        "base_urls": {"api": "https://example.org"},
        "requests": [{"name": "r", "url": "{{ base.api }}/x"}],
        "answer": "ok",
        **change,
    }
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("?", r"\?").replace("(", r"\(")):
        HTTPAPIExpert(spec, env={})


def test_a_broken_yaml_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match="broken.yaml: not valid YAML"):
        HTTPAPIExpert.from_file(bad)


def test_unknown_base_url_override_is_an_error():
    with pytest.raises(ValueError, match="unknown base URL key"):
        HTTPAPIExpert.from_file(DATA_DIR / "currency.yaml", base_urls={"nope": "http://127.0.0.1:1"})


# ---------------------------------------------------------------------------
# through the whole system
# ---------------------------------------------------------------------------


def test_the_system_routes_to_weather_and_answers_from_the_server(app):
    serve_weather(app)
    backend = ScriptedBackend(card_scorer("weather"), outputs=['location": "wrong place"}'])
    system = MRKL(experts=[shipped("weather", app)], backend=backend, router=LLMRouter(backend))
    answer = system.ask("What's the weather in Berlin tomorrow?")
    assert answer.expert == "weather"
    # the definition's own pattern understood the whole question, so its args went first
    assert answer.trace.steps[0].args == {"location": "Berlin", "day": "tomorrow"}
    assert answer.text.startswith("Weather in Berlin, Land Berlin, Germany Tomorrow (2026-11-30): slight rain")


def test_the_system_offline_answers_could_not_reach_without_the_fallback():
    port = closed_port()
    expert = HTTPAPIExpert.from_file(
        DATA_DIR / "wikipedia.yaml", env={}, base_urls={"api": f"http://127.0.0.1:{port}"}, **FAST
    )
    backend = ScriptedBackend(card_scorer("wikipedia"), outputs=['title": "Alan Turing"}'])
    answer = MRKL(experts=[expert], backend=backend, router=LLMRouter(backend)).ask("Who was Alan Turing?")
    assert answer.expert == "wikipedia" and not answer.trace.fallback
    assert answer.text.startswith(f"Could not reach 127.0.0.1:{port}")
