"""Check agent code against the catalog before it runs, so a wrong call fails before any tool is called.

`check_code(code, catalog)` parses the code with `ast` (never compiles or runs it) and reports, with the line and
column in the agent code:

```
unknown_tool         `server.tool` where `server` is a catalog server without that tool ("did you mean ...?")
unknown_server       `sevrer.tool(...)` where `sevrer` is undefined in the code and close to a server name
positional_argument  `server.tool("x")`: tools take keyword arguments only
unknown_argument     a keyword the tool's inputSchema does not declare (nearest parameter names)
missing_argument     a required keyword that is not passed
invalid_value        a literal argument (constants, list/dict literals of constants) the schema rejects
not_awaited          a tool call whose pending result is dropped or used as a value without `await`
```

A false report blocks code that would have worked, so every rule only speaks when it is sure:
- a server name bound anywhere in the code (assigned, imported, a parameter, a loop target, ...) is the code's own
  object, not the server, everywhere in the code; a star import turns the check off (names become unknowable);
- an unknown name is only called a server when it is undefined in the code, is no builtin and no stdlib module
  (`json.dumps`, `re.sub`, `asyncio.gather` without their import are left to the sandbox) and looks like a server;
- `**mapping` splats hide keys, so they turn off the missing-argument rule (a `**{"odd-name": v}` literal does not);
- unknown keywords are only reported when the schema declares its properties and does not accept other keys;
- values are only checked when they are literals, with the bridge's own validation (after its None-means-omit rule),
  and only when the schema passes `check_schema` (the bridge does not validate against a broken schema either);
- "not awaited" is only reported where the pending call cannot be awaited later: a bare statement, or an operand
  that a pending call refuses (attribute, item, iteration, truth value, arithmetic, f-string, `print(...)`, ...).
Anything the checker does not understand is not reported; the sandbox and the bridge still check at run time.

The modules: `checker` (the AST walk and the rules), `arguments` (literals, schemas, argument messages, nearest
names), `problems` (`Problem` and `render`); public names are re-exported here.
"""

from portal_mcp.runs.precheck.checker import check_code
from portal_mcp.runs.precheck.problems import MAX_PROBLEMS, MAX_RENDERED, Problem, Rule, render

__all__ = ["MAX_PROBLEMS", "MAX_RENDERED", "Problem", "Rule", "check_code", "render"]
