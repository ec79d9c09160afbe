"""The catalog: what the downstream servers offer, and how a model finds and reads it.

Owns `ToolEntry`/`Catalog` (model), the servers' states (status), the snapshot file format, search (lexical and
semantic), the typed stubs (stubs/) and token counting (tokens). May import: errors, naming, tools, config.
"""
