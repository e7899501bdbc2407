"""/schema works offline: the Swagger page references no other host, and what it references
is served; the document is also there as YAML (src/portal/api_docs.py)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import yaml


class _References(HTMLParser):
    """Every src= and href= of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in {"src", "href"} and value]


async def test_the_swagger_page_loads_only_its_own_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/schema")
    assert page.status_code == 200
    assert "SwaggerUIBundle(" in page.text
    parser = _References()
    parser.feed(page.text)
    assert len(parser.urls) >= 4  # script, preset, stylesheet, favicon
    for url in parser.urls:
        assert not urlsplit(url).netloc, f"{url} is on another host"
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
    # Nor any absolute URL elsewhere in the markup (inline scripts, styles).
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", page.text)
    assert "cdn.jsdelivr.net" not in page.text


async def test_the_script_is_swagger_ui_5_which_reads_openapi_3_1(
    client: httpx.AsyncClient,
) -> None:
    script = await client.get("/schema-assets/swagger-ui-bundle.js")
    assert script.headers["content-type"].startswith(("application/javascript", "text/javascript"))
    version = re.search(rb'PACKAGE_VERSION:"(\d+)\.', script.content)
    assert version and int(version.group(1)) >= 5
    document = (await client.get("/schema/openapi.json")).json()
    assert document["openapi"].startswith("3.1")


async def test_the_document_is_served_as_yaml_too(client: httpx.AsyncClient) -> None:
    answer = await client.get("/schema/openapi.yaml")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/vnd.oai.openapi")  # YAML
    document = yaml.safe_load(answer.text)
    assert document == (await client.get("/schema/openapi.json")).json()
    assert "/jobs" in document["paths"]
