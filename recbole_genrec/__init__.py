"""recbole_genrec: generative (semantic-ID) recommendation as a RecBole 1.2.1 plugin.

Importing the package changes nothing in RecBole: the shims of :mod:`recbole_genrec.compat`
are applied when a trainer is built (the only RecBole path that needs them).
"""

__version__ = "0.1.0"
