"""OAuth 2.1 for the portal: checking the access tokens callers bring (the portal as a resource server).

discovery (authorization server metadata, RFC 8414 / OpenID; protected resource metadata, RFC 9728: shared with the
portal's client side), keys (an issuer's JWKS, cached, rotation), introspection (opaque tokens, RFC 7662), tokens
(the checks, claims -> Identity), sources (the verifiers `auth:` asks for). surface/ answers HTTP with them.
"""

from portal_mcp.control.oauth.discovery import DiscoveryError
from portal_mcp.control.oauth.sources import Authenticator
from portal_mcp.control.oauth.tokens import Identity

__all__ = ["Authenticator", "DiscoveryError", "Identity"]
