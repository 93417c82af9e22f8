"""Write plotly figures as HTML (always) and PNG (when a Chrome/Chromium is available)."""

from __future__ import annotations

import atexit
import logging
import warnings
from pathlib import Path

import plotly.graph_objects as go

from signlab.files import atomic_path

log = logging.getLogger(__name__)
_png_state: dict[str, bool] = {}


def _png_ready() -> bool:
    """Start kaleido's browser once per process (0.1 s per image after ~1.5 s to start)."""
    if "ok" not in _png_state:
        try:
            import kaleido

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                kaleido.start_sync_server(silence_warnings=True)
            atexit.register(kaleido.stop_sync_server, silence_warnings=True)
            _png_state["ok"] = True
        except Exception as exc:  # no Chrome, or kaleido cannot start it
            log.warning("PNG output is off (%s); HTML is written. Install chromium for PNG.", exc)
            _png_state["ok"] = False
    return _png_state["ok"]


def save_figure(
    fig: go.Figure, stem: Path, png: bool = True, self_contained: bool = True
) -> list[Path]:
    """Write `stem`.html and, if possible, `stem`.png; the paths written."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    html = stem.with_suffix(".html")
    with atomic_path(html) as tmp:
        fig.write_html(tmp, include_plotlyjs=True if self_contained else "cdn", full_html=True)
    written = [html]
    if png and _png_ready():
        out = stem.with_suffix(".png")
        with warnings.catch_warnings(), atomic_path(out) as tmp:
            warnings.simplefilter("ignore")
            fig.write_image(tmp, scale=1)
        written.append(out)
    return written
