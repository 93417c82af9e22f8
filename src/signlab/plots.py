"""Write plotly figures as HTML (always) and PNG (when a Chrome/Chromium is available).

A machine without a browser is a normal case: PNG output is turned off with one warning,
and HTML is still written. Every wait on the browser is bounded.

Why not `fig.write_image`: kaleido 1.x starts its browser in a background thread whose
failure (no Chrome, a broken one) is never reported to the caller, and `write_image` then
waits on kaleido's queue forever. So we look for the browser first (choreographer's own
search: $BROWSER_PATH, then PATH, then the usual install paths), drive `kaleido.Kaleido` on
an event loop of our own in a daemon thread, and give up after a timeout, killing the browser.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import signal
import threading
import warnings
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from signlab import config
from signlab.files import atomic_path

log = logging.getLogger(__name__)

HOW_TO_ENABLE = ("For PNG copies of the charts install Chrome/Chromium (e.g. `apt install chromium`, "
                 "or `kaleido_get_chrome` where the internet is reachable) or set BROWSER_PATH")


def find_browser() -> str | None:
    """The Chrome/Chromium kaleido would start, or None (choreographer's search)."""
    from choreographer.browsers.chromium import Chromium

    return Chromium.find_browser(skip_local=False)


class PngRenderer:
    """One headless browser per process, started on first use; None once it has failed."""

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout if timeout is not None else config.png_timeout()
        self.off_reason: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kaleido: Any = None
        self._lock = threading.Lock()

    def render(self, fig: go.Figure, scale: float = 1.0) -> bytes | None:
        """PNG bytes of `fig`, or None when PNG output is off (warned about once)."""
        with self._lock:
            if self.off_reason is None and self._kaleido is None:
                self._start()
            if self.off_reason is not None:
                return None
            layout = fig.layout
            opts = {"format": "png", "scale": scale, "width": layout.width or 700, "height": layout.height or 500}
            try:
                return self._wait(self._kaleido.calc_fig(fig.to_dict(), opts=opts), "an image")
            except Exception as exc:  # noqa: BLE001 (a browser that breaks mid-run: same fallback)
                self._turn_off(f"the browser failed to render ({_describe(exc)})")
                return None

    def _start(self) -> None:
        browser = find_browser()
        if browser is None:
            self._turn_off("no Chrome/Chromium found")
            return
        import kaleido

        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(lambda loop, context: None)  # a failed start is reported once, below
        threading.Thread(target=self._loop.run_forever, name="signlab-png", daemon=True).start()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._kaleido = kaleido.Kaleido(n=1, timeout=self.timeout)
                self._wait(self._kaleido.open(), "the browser to start")
        except Exception as exc:  # noqa: BLE001 (ChromeNotFoundError, a browser that exits or hangs)
            self._turn_off(f"{browser} did not start ({_describe(exc)})")
            return
        atexit.register(self.close)

    def _wait(self, coroutine: Any, what: str) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"no answer within {self.timeout:g} s waiting for {what}") from None

    def _turn_off(self, reason: str) -> None:
        self.off_reason = reason
        self.close(graceful=False)
        log.warning("PNG output is off: %s; HTML is written. %s.", reason, HOW_TO_ENABLE)

    def close(self, graceful: bool = True) -> None:
        """Stop the browser and the loop; `graceful`: ask the browser to close first
        (bounded), as at exit. Safe to call twice."""
        kaleido_obj, self._kaleido = self._kaleido, None
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if kaleido_obj is not None and graceful:
            try:
                asyncio.run_coroutine_threadsafe(kaleido_obj.close(), loop).result(timeout=5)
            except Exception:  # noqa: BLE001 (closing is best effort; the kill below is not)
                pass
        process = getattr(kaleido_obj, "subprocess", None)
        if process is not None and process.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)  # the browser runs in its own session
        loop.call_soon_threadsafe(loop.stop)


def _describe(exc: BaseException) -> str:
    """`Type: first line of the message` (choreographer's errors carry several sentences)."""
    first = exc.args[0] if exc.args else ""
    text = str(first).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


_renderer = PngRenderer()


def save_figure(
    fig: go.Figure, stem: Path, png: bool = True, self_contained: bool = True
) -> list[Path]:
    """Write `stem`.html and, if possible, `stem`.png; the paths written."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    html = stem.with_suffix(".html")
    with atomic_path(html) as tmp:
        fig.write_html(tmp, include_plotlyjs=True if self_contained else "cdn", full_html=True)
    written = [html]
    if png:
        image = _renderer.render(fig)
        if image is not None:
            out = stem.with_suffix(".png")
            with atomic_path(out) as tmp:
                tmp.write_bytes(image)
            written.append(out)
    return written
