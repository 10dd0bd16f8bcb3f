"""``/docs`` works on a closed network: the page and everything it loads come from XRouter."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx

from tests.servers import RunningGateway

# What each kind of asset the page references must be served as.
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def test_docs_reference_no_other_host(gateway: RunningGateway) -> None:
    page = httpx.get(f"{gateway.url}/docs", timeout=30)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert {urlsplit(url).path.rsplit(".", 1)[-1] for url in urls} == {"js", "css", "png"}
    for url in urls:
        assert urlsplit(url).netloc == "", url
        assert url.startswith("/docs/assets/"), url
        asset = httpx.get(f"{gateway.url}{url}", timeout=30)
        assert asset.status_code == 200, url
        expected = CONTENT_TYPES["." + url.rsplit(".", 1)[-1]]
        assert expected in asset.headers["content-type"], (url, asset.headers["content-type"])
        assert len(asset.content) > 1000, url
    assert "http://" not in page.text
    assert "https://" not in page.text


def test_docs_load_the_openapi_document_of_this_server(gateway: RunningGateway) -> None:
    page = httpx.get(f"{gateway.url}/docs", timeout=30).text
    assert "url: '/openapi.json'" in page
    assert httpx.get(f"{gateway.url}/docs/oauth2-redirect", timeout=30).status_code == 200
    assert httpx.get(f"{gateway.url}/docs/assets/no-such-file.js", timeout=30).status_code == 404
