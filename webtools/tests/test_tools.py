"""The web tools as plain functions: Serper search against the fake Serper, the guarded fetch
against a local site. No database."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.serper import FakeSerper, StaticSite
from webtools import tools as web

HTML = b"""<!doctype html><html><head><title>Otters of the River</title></head><body>
<nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<article><h1>Otters of the River</h1>
<p>River otters are semi-aquatic mammals that live along rivers, lakes and wetlands. They are
playful, curious and very good swimmers, able to hold their breath for up to eight minutes.</p>
<p>An otter eats fish, crayfish, frogs and sometimes birds. Otters live in dens called holts,
which they dig into river banks or borrow from other animals such as beavers.</p>
<p>See the <a href="/more">longer article</a> for the otter's conservation status in Europe and
how the species came back after decades of pollution in the rivers it depends on.</p>
</article>
<footer>Copyright the River Society</footer></body></html>"""


@pytest.fixture
def loopback(settings) -> None:  # type: ignore[no-untyped-def]
    settings.WEB_FETCH_ALLOW_LOOPBACK = True


# --- serper_search -----------------------------------------------------------------------


async def test_search_returns_structured_and_readable_results(fake_serper: FakeSerper) -> None:
    result = await web.serper_search(
        q="model context protocol", num=2, gl="fr", hl="fr", page=2, tbs="qdr:w", autocorrect=False
    )

    assert not result.is_error
    path, headers, body = fake_serper.requests[-1]
    assert path == "/search"
    assert headers["x-api-key"] == fake_serper.api_key
    assert body == {
        "q": "model context protocol",
        "num": 2,
        "gl": "fr",
        "hl": "fr",
        "page": 2,
        "tbs": "qdr:w",
        "autocorrect": False,
    }
    s = result.structured
    assert [r["title"] for r in s["organic"]] == ["Result about model context protocol", "Second result"]
    assert s["answerBox"]["answer"].startswith("An open protocol")
    assert s["knowledgeGraph"]["type"] == "Protocol"
    assert s["peopleAlsoAsk"][0]["question"] == "What is MCP used for?"
    assert s["relatedSearches"] == [{"query": "mcp server"}, {"query": "mcp inspector"}]
    assert s["searchParameters"]["q"] == "model context protocol"
    assert "credits" not in s
    text = result.text
    for expected in (
        'Search results for "model context protocol"',
        "Answer box: Model Context Protocol",
        "Knowledge graph: Model Context Protocol (Protocol)",
        "1. Result about model context protocol",
        "https://example.com/first",
        "People also ask:",
        "Related searches: mcp server; mcp inspector",
    ):
        assert expected in text


async def test_search_with_no_results(fake_serper: FakeSerper) -> None:
    fake_serper.behaviour = "empty"
    result = await web.serper_search(q="nothing at all")
    assert not result.is_error
    assert result.structured["organic"] == []
    assert "No results." in result.text


async def test_search_without_a_key_is_a_tool_error(fake_serper: FakeSerper, settings) -> None:  # type: ignore[no-untyped-def]
    settings.SERPER_API_KEY = ""
    result = await web.serper_search(q="anything")
    assert result.is_error
    assert "SERPER_API_KEY" in result.text
    assert result.structured["error"]["type"] == "not_configured"
    assert fake_serper.requests == []


async def test_search_with_a_wrong_key_never_echoes_it(fake_serper: FakeSerper, settings) -> None:  # type: ignore[no-untyped-def]
    settings.SERPER_API_KEY = "sk-wrong-serper-key-123"
    result = await web.serper_search(q="anything")
    assert result.is_error
    assert result.text == "Serper answered HTTP 403: Unauthorized."
    assert result.structured["error"]["status"] == 403
    assert "sk-wrong" not in repr(result)


@pytest.mark.parametrize(
    ("behaviour", "status", "message"),
    [("error_500", 500, "Internal error."), ("error_429", 429, "Not enough credits.")],
)
async def test_search_upstream_errors_are_tool_errors(
    fake_serper: FakeSerper, behaviour: str, status: int, message: str
) -> None:
    fake_serper.behaviour = behaviour
    result = await web.serper_search(q="anything")
    assert result.is_error
    assert result.text == f"Serper answered HTTP {status}: {message}"


async def test_search_timeout_is_a_tool_error(fake_serper: FakeSerper, settings) -> None:  # type: ignore[no-untyped-def]
    fake_serper.behaviour, fake_serper.delay = "slow", 2.0
    settings.SERPER_TIMEOUT_SECONDS = 0.3
    result = await web.serper_search(q="anything")
    assert result.is_error
    assert result.structured["error"]["type"] == "timeout"
    assert "timed out" in result.text


async def test_search_unreachable_is_a_tool_error(settings) -> None:  # type: ignore[no-untyped-def]
    settings.SERPER_API_KEY = "k"
    settings.SERPER_BASE_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    result = await web.serper_search(q="anything")
    assert result.is_error
    assert result.text.startswith("Web search failed: could not reach Serper")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"q": "  "}, "must not be empty"),
        ({"q": "x", "num": 0}, "`num` must be between 1 and 100"),
        ({"q": "x", "page": 0}, "`page` must be 1 or more"),
    ],
)
async def test_search_argument_checks(fake_serper: FakeSerper, kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    result = await web.serper_search(**kwargs)
    assert result.is_error
    assert message in result.text
    assert fake_serper.requests == []


# --- fetch_webpage: content ----------------------------------------------------------------


async def test_fetch_extracts_main_text_and_title(site: StaticSite, loopback: None) -> None:
    site.pages["/otters"] = (200, {"content-type": "text/html; charset=utf-8"}, HTML)
    result = await web.fetch_webpage(url=site.url("/otters"))

    assert not result.is_error, result.text
    s = result.structured
    assert s["title"] == "Otters of the River"
    assert s["final_url"] == site.url("/otters")
    assert s["format"] == "text"
    assert s["content_type"] == "text/html"
    assert "semi-aquatic mammals" in s["content"]
    assert "Copyright the River Society" not in s["content"]  # boilerplate dropped
    assert not s["truncated"]
    assert result.text.startswith(f"# Otters of the River\nURL: {site.url('/otters')}\n")


async def test_fetch_markdown_follows_redirects_and_reports_final_url(
    site: StaticSite, loopback: None
) -> None:
    site.pages["/old"] = (301, {"location": "/otters"}, b"")
    site.pages["/otters"] = (200, {"content-type": "text/html"}, HTML)
    result = await web.fetch_webpage(url=site.url("/old"), include_markdown=True)

    assert not result.is_error, result.text
    assert result.structured["final_url"] == site.url("/otters")
    assert result.structured["format"] == "markdown"
    assert f"[longer article]({site.url('/more')})" in result.structured["content"]
    assert site.hits == ["/old", "/otters"]


async def test_fetch_truncates_to_max_chars(site: StaticSite, loopback: None) -> None:
    site.pages["/otters"] = (200, {"content-type": "text/html"}, HTML)
    result = await web.fetch_webpage(url=site.url("/otters"), max_chars=40)
    assert len(result.structured["content"]) == 40
    assert result.structured["truncated"] is True
    assert result.text.endswith("[Truncated to 40 characters.]")


async def test_fetch_plain_text_passes_through(site: StaticSite, loopback: None) -> None:
    site.pages["/notes.txt"] = (
        200,
        {"content-type": "text/plain; charset=latin-1"},
        "caf\xe9 au lait".encode("latin-1"),
    )
    result = await web.fetch_webpage(url=site.url("/notes.txt"))
    assert result.structured["content"] == "caf\xe9 au lait"


async def test_fetch_caps_the_body_size(site: StaticSite, loopback: None, settings) -> None:  # type: ignore[no-untyped-def]
    settings.WEB_FETCH_MAX_BYTES = 1000
    site.pages["/big"] = (200, {"content-type": "text/html"}, b"<p>" + b"x" * 5000 + b"</p>")
    result = await web.fetch_webpage(url=site.url("/big"))
    assert result.is_error
    assert "larger than the 1000 byte limit" in result.text


async def test_fetch_stops_reading_at_the_cap_without_a_length(
    site: StaticSite, loopback: None, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.WEB_FETCH_MAX_BYTES = 1000
    # No Content-Length to refuse early: the stream is cut at the cap, the page marked truncated.
    site.pages["/chunked"] = (
        200,
        {"content-type": "text/plain", "transfer-encoding": "chunked"},
        b"y" * 5000,
    )
    result = await web.fetch_webpage(url=site.url("/chunked"))
    assert not result.is_error, result.text
    assert result.structured["content"] == "y" * 1000
    assert result.structured["truncated"] is True


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"content-type": "application/pdf"}, "Only text pages can be fetched; this one is application/pdf."),
        ({"content-type": "image/png"}, "Only text pages can be fetched; this one is image/png."),
        ({}, "Only text pages can be fetched; this one is no content type."),
    ],
)
async def test_fetch_refuses_non_text_types(
    site: StaticSite, loopback: None, headers: dict, message: str
) -> None:  # type: ignore[type-arg]
    site.pages["/file"] = (200, headers, b"%PDF-1.7 binary")
    result = await web.fetch_webpage(url=site.url("/file"))
    assert result.is_error
    assert result.text == message


async def test_fetch_reports_http_errors(site: StaticSite, loopback: None) -> None:
    result = await web.fetch_webpage(url=site.url("/missing"))
    assert result.is_error
    assert result.text == "The page answered HTTP 404."


async def test_fetch_timeout(site: StaticSite, loopback: None, settings) -> None:  # type: ignore[no-untyped-def]
    settings.WEB_FETCH_TIMEOUT_SECONDS = 0.3
    site.pages["/slow"] = (200, {"content-type": "text/plain"}, b"late")
    site.delays["/slow"] = 2.0
    result = await web.fetch_webpage(url=site.url("/slow"))
    assert result.is_error
    assert result.structured["error"]["type"] == "timeout"


async def test_fetch_too_many_redirects(site: StaticSite, loopback: None, settings) -> None:  # type: ignore[no-untyped-def]
    settings.WEB_FETCH_MAX_REDIRECTS = 2
    site.pages["/loop"] = (302, {"location": "/loop"}, b"")
    result = await web.fetch_webpage(url=site.url("/loop"))
    assert result.is_error
    assert "Too many redirects" in result.text
    assert site.hits == ["/loop"] * 3


async def test_fetch_through_serper_scrape(fake_serper: FakeSerper, settings) -> None:  # type: ignore[no-untyped-def]
    settings.WEB_FETCH_BACKEND = "serper"
    result = await web.fetch_webpage(url="https://example.com/a", include_markdown=True)
    assert not result.is_error, result.text
    assert fake_serper.requests[-1][0] == "/scrape"
    assert fake_serper.requests[-1][2] == {"url": "https://example.com/a", "includeMarkdown": True}
    assert result.structured["title"] == "Scraped page"
    assert result.structured["content"].startswith("# Scraped page")
    assert result.structured["source"] == "serper"


# --- fetch_webpage: SSRF -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/otters",
        "http://localhost:{port}/otters",  # a name: refused where it is dialled
        "http://[::1]:{port}/otters",
        "http://0x7f000001:{port}/otters",  # integer spelling of 127.0.0.1
        "http://2130706433:{port}/otters",
        "http://0.0.0.0:{port}/otters",
        "http://[::ffff:127.0.0.1]:{port}/otters",  # IPv6-mapped IPv4
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://100.64.0.1/",  # carrier-grade NAT
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[fd00:ec2::254]/",  # AWS IPv6 metadata (ULA)
        "http://[fe80::1]/",
        "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
        "http://224.0.0.1/",
        "file:///etc/passwd",
        "ftp://example.com/",
        "gopher://127.0.0.1:70/",
        "http://user:pass@example.com/",
        "not a url",
    ],
)
async def test_fetch_refuses_internal_addresses(site: StaticSite, url: str) -> None:
    site.pages["/otters"] = (200, {"content-type": "text/html"}, HTML)
    result = await web.fetch_webpage(url=url.format(port=site.port))
    assert result.is_error
    assert result.structured["error"]["type"] == "refused", result.text
    assert site.hits == []  # refused before a single packet reached the server


async def test_redirect_to_metadata_is_refused(site: StaticSite, loopback: None) -> None:
    site.pages["/hop"] = (302, {"location": "http://169.254.169.254/latest/meta-data/"}, b"")
    result = await web.fetch_webpage(url=site.url("/hop"))
    assert result.is_error
    assert result.structured["error"]["type"] == "refused"
    assert "169.254.169.254" in result.text


async def test_redirect_to_a_name_resolving_to_loopback_is_refused_at_dial_time(
    site: StaticSite, settings
) -> None:  # type: ignore[no-untyped-def]
    # The first hop is let through by a guard that trusts loopback; the redirect names
    # "localhost", which passes the URL check and is refused only where it is dialled.
    allowed = web._GuardedBackend(allow_loopback=True)
    refused = web._GuardedBackend(allow_loopback=False)
    stream = await allowed.connect_tcp("127.0.0.1", site.port)
    await stream.aclose()
    with pytest.raises(web.FetchRefused, match="localhost resolves to an address"):
        await refused.connect_tcp("localhost", site.port)


def test_address_policy() -> None:
    assert web.address_allowed("93.184.216.34")
    assert web.address_allowed("2606:2800:220:1:248:1893:25c8:1946")
    for address in (
        "127.0.0.1",
        "::1",
        "0.0.0.0",
        "::",
        "10.1.2.3",
        "::ffff:10.1.2.3",
        "2002:a00:1::",
        "fec0::1",
    ):
        assert not web.address_allowed(address), address
    assert web.address_allowed("127.0.0.1", allow_loopback=True)
    assert not web.address_allowed("10.0.0.1", allow_loopback=True)


# --- fetch_webpage: TLS through the guarded pool ---------------------------------------------


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for the name "localhost" only (no IP address in it)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def https_site(tmp_path: Path) -> Iterator[tuple[StaticSite, Path]]:
    cert, key = _self_signed(tmp_path)
    secure = StaticSite(ssl_certfile=str(cert), ssl_keyfile=str(key)).start()
    secure.pages["/otters"] = (200, {"content-type": "text/html"}, HTML)
    yield secure, cert
    secure.stop()


async def test_tls_is_verified_against_the_url_host_while_the_checked_ip_is_dialled(
    https_site: tuple[StaticSite, Path], loopback: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    site, cert = https_site
    untrusted = await web.fetch_webpage(url=f"https://localhost:{site.port}/otters")
    assert untrusted.is_error  # a self-signed certificate is not in the CA bundle
    assert untrusted.text == (
        f"Could not fetch https://localhost:{site.port}/otters: its TLS certificate could not be verified."
    )
    assert site.hits == []

    monkeypatch.setattr(web, "_ssl_context", lambda: ssl.create_default_context(cafile=str(cert)))
    trusted = await web.fetch_webpage(url=f"https://localhost:{site.port}/otters")
    assert not trusted.is_error, trusted.text
    assert trusted.structured["title"] == "Otters of the River"
    # Dialled 127.0.0.1 (the checked address) yet verified the certificate for "localhost":
    # the same certificate does not cover the literal address.
    by_address = await web.fetch_webpage(url=f"https://127.0.0.1:{site.port}/otters")
    assert by_address.is_error
    assert by_address.text.endswith("its TLS certificate could not be verified.")
    assert site.hits == ["/otters"]


async def test_unreachable_site(loopback: None) -> None:
    result = await web.fetch_webpage(url="http://127.0.0.1:9/")  # discard port: nothing listens
    assert result.is_error
    assert result.text == "Could not fetch http://127.0.0.1:9/: the site could not be reached."
