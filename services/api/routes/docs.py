"""The interactive API documentation at ``/docs``, with every asset served by the API.

FastAPI's own page loads Swagger UI from a CDN, which leaves it blank on a cluster without
internet access; this one loads the copy in ``services/api/static/swagger-ui``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

from services.api.errors import NotFound

ASSETS_DIR = Path(__file__).resolve().parent.parent / "static" / "swagger-ui"
#: The files the page loads; the rest of ASSETS_DIR is their provenance and licences.
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
DOCS_PATH = "/docs"
OAUTH2_REDIRECT_PATH = f"{DOCS_PATH}/oauth2-redirect"

router = APIRouter(prefix=DOCS_PATH, include_in_schema=False)


@router.get("")
async def docs(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    js, css, icon = (f"{root}{DOCS_PATH}/assets/{name}" for name in ASSETS)
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} API",
        swagger_js_url=js,
        swagger_css_url=css,
        swagger_favicon_url=icon,
        oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_PATH}",
        # Swagger UI's default sends the document to an online validator for a badge.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/oauth2-redirect")
async def oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/assets/{name}")
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise NotFound(f"no file {name!r} in the documentation's assets", {"name": name})
    return FileResponse(ASSETS_DIR / name)
