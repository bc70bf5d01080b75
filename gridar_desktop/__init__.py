"""GridAR Desktop: offline autoregressive image generation with GridAR test-time scaling.

Importing this package forces the Hugging Face libraries into offline mode *before* anything can import
transformers: the app never reaches the network, and models load only from local folders.
"""
import os as _os

# Forced, not setdefault: an artist's shell may carry HF_HUB_OFFLINE=0 from another tool, and this app must
# never download anything at run time.
_os.environ["HF_HUB_OFFLINE"] = "1"
_os.environ["TRANSFORMERS_OFFLINE"] = "1"
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
