"""A griffe extension: the package's docstrings use a little reST; show it as Markdown.

``:class:`X``` (and the other roles) becomes inline code, and a paragraph ending
in ``::`` before a literal block ends in a plain colon, as Sphinx would show it.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|attr|exc|mod|data|obj):`~?([^`]+)`")
_LITERAL_INTRO = re.compile(r"(\S)::\n\n", flags=re.MULTILINE)


class RestMarkup(griffe.Extension):
    """Rewrite reST roles and literal-block markers in every docstring."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is not None:
            text = _ROLE.sub(r"`\1`", docstring.value)
            docstring.value = _LITERAL_INTRO.sub(r"\1:\n\n", text)
