"""Offline OCR of electricity bills and import of purchase ledgers.

Submodules (import them directly; this package imports nothing, so ``import collector.ocr`` is free):

- ``bills``: bill photo -> checked, reviewable fields (``read_bill``, ``extract_bill``, ``confirm``,
  ``BillExtraction.to_document_fields``);
- ``accuracy``: ``python -m collector.ocr.accuracy --seeds 10`` measures field accuracy on generated bills;
- ``engine``: the offline OCR engine (rapidocr + onnxruntime with the models bundled in the wheel), loaded
  on first use;
- ``ledgers``: CSV/XLSX purchase ledgers and supplier settlement statements -> rows in Wh and fen;
- ``billgen``: synthetic State Grid bills and receipts for simulators and tests (Pillow + a CJK font).
"""
