"""SQL templates (``engine.template.Template``, made here at plan time) and deparsing.

The planner deparses an edited AST once per plan (``deparse``); the Template it makes is
rendered per execution by the engine without pglast.
"""

from __future__ import annotations

from typing import Any

from pglast.stream import RawStream

from multigres.gateway.engine.template import Template

__all__ = ["Template", "deparse"]


def deparse(node: Any) -> str:
    """SQL text of an AST node (plan time only)."""
    return str(RawStream()(node))
