"""recbole_genrec: generative (semantic-ID) recommendation as a RecBole 1.2.1 plugin.

Importing the package changes nothing in RecBole: the shims of :mod:`recbole_genrec.compat`
are applied when a run loads its dataset or builds its trainer (the RecBole paths that need them).
"""

__version__ = "0.1.0"
