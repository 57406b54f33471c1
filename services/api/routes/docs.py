"""The interactive API documentation at ``/docs``, with every asset served by the API.

FastAPI's own page loads Swagger UI from a CDN, which leaves it blank on a cluster without
internet access; this one loads the copy in ``services/api/static/swagger-ui``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR = Path(__file__).resolve().parent.parent / "static" / "swagger-ui"
DOCS_PATH = "/docs"
ASSETS_PATH = f"{DOCS_PATH}/assets"
OAUTH2_REDIRECT_PATH = f"{DOCS_PATH}/oauth2-redirect"

router = APIRouter(include_in_schema=False)


def assets() -> StaticFiles:
    """The Swagger UI files, to mount at ``ASSETS_PATH``."""
    return StaticFiles(directory=ASSETS_DIR)


@router.get(DOCS_PATH)
async def docs(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} API",
        swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon-32x32.png",
        oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_PATH}",
        # Swagger UI's default sends the document to an online validator for a badge.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(OAUTH2_REDIRECT_PATH)
async def oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()
