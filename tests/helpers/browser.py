"""PNG copies of charts are written only where kaleido finds a Chrome/Chromium."""

from __future__ import annotations

import pytest

from signlab.plots import find_browser

BROWSER = find_browser()
needs_browser = pytest.mark.skipif(BROWSER is None, reason="no Chrome/Chromium: PNG output is off (apt install chromium)")
