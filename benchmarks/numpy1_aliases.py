"""Run a script with the NumPy 1 aliases RecBole 1.2.1 needs, when only NumPy 2 is installed.

    python benchmarks/numpy1_aliases.py benchmarks/gpu_tiger_beauty.py [args...]

RecBole 1.2.1's ``Config.compatibility_settings`` reads ``np.float_``, ``np.complex_`` and
``np.unicode_`` (removed in NumPy 2.0) to re-create ``np.float`` and friends. The project pins
numpy < 2 (constraints.txt) and ``gpu_run.sh`` carries numpy 1.26; this launcher is its fallback
on a machine whose compiled packages (scipy, scikit-learn) need the NumPy 2 there. It defines
the three names as NumPy 1 did, only where they are missing, then runs the script as ``__main__``.
Nothing in the package depends on it.
"""

import runpy
import sys

import numpy as np

for old, new in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
    if old not in np.__dict__:
        setattr(np, old, new)

if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: python benchmarks/numpy1_aliases.py SCRIPT [ARGS...]")
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
