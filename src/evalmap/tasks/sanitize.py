"""BigCodeBench's post-processing of generated code, rebuilt on Python's `ast`.

The leaderboard numbers come from `sanitize` followed by calibration, so evalmap does the
same before running a bigcodebench sample:

1. keep the longest run of lines that parses (a completion cut off at max_tokens loses its
   broken tail instead of failing with a SyntaxError);
2. keep every top-level import, and of the top-level functions, classes and simple
   assignments only those the entry point reaches through the identifiers it uses (example
   calls, prints and `if __name__` blocks go);
3. calibration: `code_prompt + "\\n    pass\\n"` in front, so the task's own imports and
   constants are there even when the answer forgot them.

Quirks kept on purpose, because the reference keeps them (tree-sitter based): the first
definition of a name wins, decorated definitions are dropped (tree-sitter calls them
`decorated_definition`), and trailing unindented lines naming the entry point are cut.
"""

from __future__ import annotations

import ast
from collections import deque

from evalmap import pyast

CALIBRATION_STUB = "\n    pass\n"


def _parses(text: str) -> bool:
    try:
        pyast.parse(text)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def longest_valid_chunk(text: str) -> str:
    """The run of two or more lines that parses and has the most non-empty lines (earliest on
    ties), as BigCodeBench's `code_extract`, without trying all O(n^2) pairs: for each start
    only the longest parsing end matters, and starts that cannot beat the best are skipped."""
    lines = text.split("\n")
    filled = [1 if line.strip() else 0 for line in lines]
    suffix = [0] * (len(lines) + 1)
    for i in range(len(lines) - 1, -1, -1):
        suffix[i] = suffix[i + 1] + filled[i]
    best, best_pair = 0, (0, 0)
    for i in range(len(lines)):
        if suffix[i] <= best:
            break
        for j in range(len(lines) - 1, i, -1):
            count = suffix[i] - suffix[j + 1]
            if count <= best:
                break
            if _parses("\n".join(lines[i : j + 1])):
                while j > i + 1 and not filled[j]:  # the reference keeps the shortest end with this count
                    j -= 1
                best, best_pair = count, (i, j)
                break
    return "\n".join(lines[best_pair[0] : best_pair[1] + 1])


def _identifiers(node: ast.AST) -> set[str]:
    """Every identifier token in a definition (tree-sitter's `identifier` nodes)."""
    found: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
        elif isinstance(sub, ast.arg) or isinstance(sub, ast.keyword) and sub.arg:
            found.add(sub.arg)
        elif isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(sub.name)
        elif isinstance(sub, ast.alias):
            found.update(part for part in (sub.name.split(".")[0], sub.asname) if part)
    return found


def _defined_name(node: ast.stmt) -> str | None:
    """The name a top-level statement defines in the reference's eyes, or None."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return None if node.decorator_list else node.name
    if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and node.value is not None and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def sanitize(code: str, entrypoint: str) -> str:
    """Imports plus the definitions `entrypoint` depends on, from the parsing part of `code`."""
    code = longest_valid_chunk(code.strip())
    try:
        tree = pyast.parse(code)
    except SyntaxError:  # a lone line that does not parse: nothing usable
        return ""
    imports: list[str] = []
    definitions: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            imports.append(ast.get_source_segment(code, node) or "")
            continue
        name = _defined_name(node)
        if name is not None and name not in definitions:
            definitions[name] = node
    deps = {name: _identifiers(node) for name, node in definitions.items()}
    reachable, queue = {entrypoint}, deque([entrypoint])
    while queue:
        for used in deps.get(queue.popleft(), ()):
            if used not in reachable:
                reachable.add(used)
                queue.append(used)
    kept = [ast.get_source_segment(code, node) or "" for name, node in definitions.items() if name in reachable]
    lines = "\n".join(imports + kept).splitlines()
    cut = None
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(" "):
            break
        if entrypoint in lines[i]:
            cut = i
    return "\n".join(lines[:cut] if cut is not None else lines)


def calibrated(code_prompt: str, solution: str) -> str:
    """BigCodeBench's calibrated program: the task's code prompt with a `pass` body, then the solution."""
    return code_prompt + CALIBRATION_STUB + solution
