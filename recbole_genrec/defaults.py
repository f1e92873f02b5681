"""The package's yaml defaults (``recbole_genrec/properties``) as plain dicts.

Imports nothing of this package or of RecBole, so the RecBole-free parts (the tokenizer) and
tests can read the one place where every default lives. ``Config`` layers the same files
under RecBole's configurator.
"""

import functools
import os
import re

import yaml

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "properties")


class YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-3`` (no dot) as a float, as RecBole's loader does."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*\.[\d_]*(?:[eE][-+]?\d+)?|\.\d[\d_]*(?:[eE][-+]?\d+)?|\d[\d_]*[eE][-+]?\d+|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


@functools.lru_cache(maxsize=None)
def _read(path):
    with open(path, "r", encoding="utf-8") as f:
        return yaml.load(f, Loader=YamlLoader) or {}


def package_defaults(name):
    """The defaults of ``properties/<name>.yaml`` (e.g. ``"sid"``, ``"genpas"``, ``"model/TIGER"``), a fresh dict."""
    return dict(_read(os.path.join(PROPERTIES_DIR, f"{name}.yaml")))
