"""Checkpoint -> ONNX export (fp32 + static int8 twin) with a parity check and a JSON sidecar.

    .venv/bin/python -m export_onnx.export models/emotune-ser-v1/model.ckpt --output DIR
    .venv/bin/python -m export_onnx.ship     # the shipped model, evaluated on held-out speakers

Submodules are imported explicitly (``export_onnx.export``) so that importing the package stays cheap.
"""

__all__: list[str] = []
