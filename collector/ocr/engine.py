"""A thin, offline wrapper around RapidOCR (PP-OCR models on onnxruntime).

Invariants:
- importing this module loads neither rapidocr nor onnxruntime; the engine is built on first use, so
  ``import collector.ocr`` stays cheap and works where the OCR extra is not installed;
- no download at run time: the detector, classifier and recogniser are given explicit paths to the ONNX files
  that ship inside the ``rapidocr`` wheel, which bypasses rapidocr's download-if-missing code path; a missing
  file is an OcrUnavailable error, never a network request;
- output is plain data (text, confidence in [0, 1], box corners in pixels of the input image), sorted top to
  bottom then left to right; nothing here is hashed.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install rapidocr onnxruntime"

# The models bundled in the rapidocr 3.x wheel (its default config uses the same files).
BUNDLED_MODELS: dict[str, str] = {
    "Det": "PP-OCRv6_det_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
}

Point = tuple[float, float]


class OcrUnavailable(RuntimeError):
    """The OCR engine or its bundled models are not installed."""


@dataclass(frozen=True, slots=True)
class OcrLine:
    """One detected text region."""

    text: str
    confidence: float
    """Recogniser score in [0, 1]."""
    box: tuple[Point, Point, Point, Point]
    """Corners clockwise from top-left, in pixels of the input image."""

    @property
    def top(self) -> float:
        return min(p[1] for p in self.box)

    @property
    def bottom(self) -> float:
        return max(p[1] for p in self.box)

    @property
    def left(self) -> float:
        return min(p[0] for p in self.box)

    @property
    def center_y(self) -> float:
        return sum(p[1] for p in self.box) / 4

    @property
    def height(self) -> float:
        return self.bottom - self.top


def model_dir() -> Path:
    """Where the installed rapidocr keeps its bundled ONNX models (without importing it)."""
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or spec.origin is None:
        raise OcrUnavailable(f"the OCR engine is not installed; run `{INSTALL_HINT}`")
    return Path(spec.origin).parent / "models"


class OcrEngine:
    """Lazily constructed RapidOCR instance. Thread-safe; reuse one per process (model load is ~1 s)."""

    def __init__(self, *, threads: int | None = None, min_score: float = 0.5) -> None:
        """``threads`` caps onnxruntime's intra-op threads (None: its default, all cores);
        regions scoring below ``min_score`` are dropped by rapidocr."""
        self._threads = threads
        self._min_score = min_score
        self._ocr: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._ocr is not None:
                return self._ocr
            for module in ("rapidocr", "onnxruntime"):
                if importlib.util.find_spec(module) is None:
                    raise OcrUnavailable(
                        f"OCR needs `{module}`, which is not installed; run `{INSTALL_HINT}`"
                    )
            models = model_dir()
            params: dict[str, Any] = {
                "Global.log_level": "warning",
                "Global.text_score": self._min_score,
            }
            for stage, filename in BUNDLED_MODELS.items():
                path = models / filename
                if not path.is_file():
                    raise OcrUnavailable(
                        f"bundled OCR model {path} is missing (rapidocr version without bundled models?); "
                        f"reinstall with `{INSTALL_HINT}`"
                    )
                params[f"{stage}.model_path"] = str(path)
            if self._threads is not None:
                params["EngineConfig.onnxruntime.intra_op_num_threads"] = self._threads
            from rapidocr import RapidOCR

            self._ocr = RapidOCR(params=params)
            return self._ocr

    def recognize(self, image: bytes) -> tuple[OcrLine, ...]:
        """Text regions in an encoded image (PNG, JPEG, ...), top to bottom, left to right.

        The image is decoded by OpenCV, which applies a JPEG's EXIF orientation (phone photos taken sideways)."""
        ocr = self._load()
        import cv2
        import numpy as np

        arr = cv2.imdecode(np.frombuffer(image, dtype=np.uint8), cv2.IMREAD_COLOR)
        if arr is None:
            raise ValueError("not a decodable image")
        result = ocr(arr)
        txts = getattr(result, "txts", None)
        if not txts:
            return ()
        lines = []
        for text, score, box in zip(txts, result.scores, result.boxes, strict=True):
            pts = [(float(x), float(y)) for x, y in box]
            if len(pts) != 4:
                continue
            corners = (pts[0], pts[1], pts[2], pts[3])
            lines.append(OcrLine(text=str(text), confidence=float(score), box=corners))
        lines.sort(key=lambda line: (round(line.center_y), line.left))
        return tuple(lines)


_default: OcrEngine | None = None
_default_lock = threading.Lock()


def default_engine() -> OcrEngine:
    """The process-wide engine (built lazily)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = OcrEngine()
        return _default
