"""The desktop studio (PySide6). The only package that imports Qt; it drives the Qt-free engine on one GPU thread."""
