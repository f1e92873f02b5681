"""recbole_genrec: generative (semantic-ID) recommendation as a RecBole 1.2.1 plugin."""

from recbole_genrec import compat as _compat  # noqa: F401  (applies the RecBole/torch shims once)

__version__ = "0.1.0"
