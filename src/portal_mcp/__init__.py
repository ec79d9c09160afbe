"""portal-mcp: one MCP server in front of many, exposing `search_api` and `execute_code`."""

from portal_mcp.errors import PortalError

__all__ = ["PortalError", "__version__"]

__version__ = "0.1.0"
