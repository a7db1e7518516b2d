from __future__ import annotations

import pytest

from collector.ocr.engine import OcrEngine


@pytest.fixture(scope="session")
def engine() -> OcrEngine:
    """One real OCR engine for the whole run: loading the models takes about a second."""
    return OcrEngine()
