"""Runs of agent code: the pre-run check (precheck/), the bridge every tool call from the sandbox goes through
(lookup, policy, validation, approval, downstream call, audit) and the approval questions (approvals).

May import: errors, naming, tools, config, catalog, control, downstream, sandbox.
"""
