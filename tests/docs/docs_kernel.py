"""The child process that runs one page's Python blocks, one after the other.

The harness starts it once per page (``python tests/docs/docs_kernel.py``) and sends one JSON
request per line on stdin: ``{"source", "page", "line", "mode", "continue"}``. Each block runs
in a fresh ``__main__`` namespace (or the previous one with ``continue``), as if pasted into a
new ``python`` session; its stdout is captured. The answer is one line on stdout, after
:data:`MARK`, so output the block or its subprocesses print is never mistaken for it.

Modes: ``run`` executes the block; ``imports`` compiles it and executes only its import
statements (for blocks that cannot run here: their syntax and names are still checked).
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import sys
import traceback
import types
from typing import Any

MARK = "\x1edocs-result "


def _imports_only(tree: ast.Module) -> ast.Module:
    body: list[ast.stmt] = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    return ast.Module(body=body, type_ignores=[])


def run_block(request: dict[str, Any], namespace: dict[str, Any]) -> dict[str, Any]:
    """Run (or import-check) one block in ``namespace``; never raises."""
    out = io.StringIO()
    # Pad with blank lines so tracebacks name the block's line in the Markdown page.
    padded = "\n" * (request["line"] - 1) + request["source"]
    try:
        tree = ast.parse(padded, filename=request["page"])
        if request["mode"] == "imports":
            tree = _imports_only(tree)
        code = compile(tree, request["page"], "exec")
        with contextlib.redirect_stdout(out):
            exec(code, namespace)
    except KeyboardInterrupt:
        raise
    except BaseException:
        return {"ok": False, "error": traceback.format_exc(), "stdout": out.getvalue()}
    return {"ok": True, "error": None, "stdout": out.getvalue()}


def fresh_main() -> dict[str, Any]:
    """A new ``__main__`` module, installed in ``sys.modules`` as a pasted script's would be
    (``typing.get_type_hints`` resolves a TypedDict's annotations through it)."""
    module = types.ModuleType("__main__")
    sys.modules["__main__"] = module
    return module.__dict__


def main() -> None:
    kernel_main = sys.modules["__main__"]
    answer = sys.stdout
    namespace = fresh_main()
    for line in sys.stdin:
        request = json.loads(line)
        if not request["continue"]:
            namespace = fresh_main()
        result = run_block(request, namespace)
        sys.stderr.flush()
        answer.write(MARK + json.dumps(result) + "\n")
        answer.flush()
    sys.modules["__main__"] = kernel_main


if __name__ == "__main__":
    main()
