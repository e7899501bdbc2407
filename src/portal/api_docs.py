"""/schema: the OpenAPI document as a Swagger UI page, JSON and YAML, with no CDN.

Litestar's Swagger page loads its script, stylesheet and favicon from jsDelivr, so it is
blank on a machine without internet access. The `swagger-ui-py` wheel ships Swagger UI's
dist files (5.24, which reads OpenAPI 3.1); the portal serves the few the page uses from
/schema-assets and points the page there.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin, YamlRenderPlugin
from litestar.static_files import create_static_files_router

from rcc import __version__

ASSETS_PATH = "/schema-assets"
# Found through importlib: the package has no type hints, and nothing of it is imported.
SWAGGER_DIST = Path(str(files("swagger_ui") / "static"))


def openapi_config() -> OpenAPIConfig:
    """/schema (Swagger UI), /schema/openapi.json and /schema/openapi.yaml."""
    swagger = SwaggerRenderPlugin(
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
    )
    return OpenAPIConfig(
        title="RCC portal API",
        version=__version__,
        path="/schema",
        render_plugins=[swagger, YamlRenderPlugin()],
    )


def swagger_assets() -> Router:
    """/schema-assets: Swagger UI's script, preset, stylesheet and favicon from the wheel."""
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[SWAGGER_DIST],
        cache_control=CacheControlHeader(max_age=86400, public=True),
        include_in_schema=False,
    )
