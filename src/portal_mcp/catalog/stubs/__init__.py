"""JSON Schema -> typed Python stubs of downstream tools (per tool for search replies, per server as `.pyi`).

`schema` converts schemas to the type values of `pytypes`; `render` turns tools into source; `text` trims
descriptions for it.
"""

from portal_mcp.catalog.stubs.pytypes import PyType, TypedDictDef
from portal_mcp.catalog.stubs.render import Detail, render_module, render_stub, render_stubs
from portal_mcp.catalog.stubs.schema import TypeBuilder

__all__ = ["Detail", "PyType", "TypeBuilder", "TypedDictDef", "render_module", "render_stub", "render_stubs"]
