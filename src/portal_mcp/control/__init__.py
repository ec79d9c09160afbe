"""The control plane: who may do what, and what happened.

Owns the access policy (access), the redaction of secrets (credentials), the audit record and its vocabulary
(audit), the durable audit stores (audit_store/) and the Prometheus metrics (metrics). It reaches people (e.g.
approvals) only through callbacks handed down. May import: errors, naming, tools, config, catalog.
"""
