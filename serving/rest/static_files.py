"""The painter's static files: which file a URL path names (never one outside the folder),
and its content type."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8", ".json": "application/json",
    ".map": "application/json", ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
    ".ico": "image/x-icon", ".wasm": "application/wasm", ".woff2": "font/woff2",
    ".woff": "font/woff",
}


def static_file(root: Path, raw_path: str) -> Path | None:
    """The file under ``root`` a URL path names, or None (also for any way out of it).

    The path is percent-decoded once; ``..`` segments, hidden names (``.git``),
    backslashes and NUL bytes are refused, and the resolved file (symbolic links
    followed) must still lie under ``root``. A folder serves its ``index.html``.
    """
    decoded = unquote(raw_path)
    if "\x00" in decoded or "\\" in decoded:
        return None
    parts = [part for part in decoded.split("/") if part not in ("", ".")]
    if any(part.startswith(".") for part in parts):
        return None
    base = root.resolve()
    try:
        target = base.joinpath(*parts).resolve(strict=True)
        if target.is_dir():
            target = (target / "index.html").resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if not target.is_relative_to(base) or not target.is_file():
        return None
    return target


def content_type(path: Path) -> str:
    return _CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")

