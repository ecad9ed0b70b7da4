"""Function calls decoded and checked as the Berkeley Function Calling Leaderboard (BFCL) does it.

Learnt from bfcl-eval 2026.3.23 (`eval_checker/ast_eval/ast_checker.py`, `eval_runner.py`,
`model_handler/utils.py`) and written anew; `bench/bench_bfcl_agreement.py` compares the verdicts with
BFCL's own on the same outputs. A decoded call is `{name: {param: value}}`; an answer is a list of them.

- Prompt mode: the answer is call syntax, `[f(a=1), g(b="x")]` (Python) or one Java / JavaScript call.
  Python is parsed with `ast`. Java and JavaScript, which BFCL parses with tree-sitter, are parsed by
  `function_call_syntax` here (a hand-written parser of the same call subset; see its docstring).
- Native mode: OpenAI-style `tool_calls` (`decode_tool_calls`), or the JSON tool calls a chat template
  makes the model write as text (`decode_text_tool_calls`).

`check_entry` is BFCL's whole per-entry decision. In "irrelevance" and "live_irrelevance" the answer is
right when no call decodes. An answer that fails to decode counts as no call, as in BFCL: its
maintainers kept that rule in issue #443 (ShishirPatil/gorilla; "an attempted call that does not parse
is not a valid call"), knowing a model answering `abc` everywhere scores 100% there, and issue #1362
shows weak models credited for broken tool calls. evalmap keeps the rule so its numbers sit beside the
leaderboard's; the verdict's `message` says "undecodable" so a report can count those abstentions apart.

Divergences from BFCL, all in Python-syntax values, where BFCL `eval`s model text and evalmap never
evaluates anything:
- arithmetic (`BinOp`) is computed only over constants (numbers, strings, bytes, with sizes bounded);
  a result past the bounds (`9**9**9`) stays as its source text where BFCL would compute it or hang;
- arithmetic naming something that is not a Python builtin (`x * 2`) fails to decode, as BFCL's eval
  fails with NameError; other non-constant arithmetic (`len("ab") + 1`, `__import__("os")...` + 1) is
  kept as source text where BFCL would run it;
- a `lambda` value fails to decode, as it does in BFCL (its `value.body[0]` raises before any eval).
"""

from __future__ import annotations

import ast
import builtins
import copy
import json
import operator
import re
from dataclasses import dataclass
from typing import Any

from evalmap.tasks import function_call_syntax as syntax
from evalmap.tasks.function_call_syntax import UNNAMED, CallParseError

__all__ = [
    "UNNAMED",
    "CallParseError",
    "REASONS",
    "Verdict",
    "check_entry",
    "decode_prompt_output",
    "decode_text_tool_calls",
    "decode_tool_calls",
    "answer_calls",
    "format_calls",
    "openai_tools",
]

# Verdict.reason: why an answer is wrong ("" when right).
REASONS = {
    "unparsable": "the answer does not decode to calls",
    "wrong_count": "not as many calls as expected",
    "wrong_name": "the call names another function",
    "missing_param": "a parameter the answer needs is absent",
    "unexpected_param": "a parameter the function or the answer does not have",
    "type": "a value of the wrong type",
    "value": "a value that is not among the allowed ones",
    "no_match": "in a parallel answer, an expected call that no call matches",
    "no_call": "relevance: no call where one was expected",
    "call_in_irrelevance": "irrelevance: a call where none was expected",
}


@dataclass(frozen=True)
class Verdict:
    """One answer judged: `reason` is a key of REASONS, `error_type` BFCL's own label for it."""

    valid: bool
    reason: str = ""
    error_type: str = ""
    message: str = ""


# -- prompt mode -------------------------------------------------------------------------------

_MAX_INT_BITS = 12_000  # below Python's 4300-digit int/str limit, so any value can be printed
_MAX_TEXT = 100_000
_BUILTIN_NAMES = frozenset(dir(builtins))


def decode_prompt_output(text: str, language: str) -> list[dict[str, dict]]:
    """BFCL's prompt-mode decoding: strip backticks, newlines and spaces, bracket the answer, then parse
    the calls ("python": every call of the list; "java" / "javascript": the first call)."""
    text = text.strip("`\n ")
    if not text.startswith("["):
        text = "[" + text
    if not text.endswith("]"):
        text += "]"
    if language == "python":
        return _decode_python(text)
    if language == "java":
        return syntax.parse_java(text[1:-1])
    if language == "javascript":
        return syntax.parse_javascript(text[1:-1])
    raise ValueError(f"unknown call language {language!r}")


def _decode_python(text: str) -> list[dict[str, dict]]:
    try:
        tree = ast.parse(text.strip().strip("'"), mode="eval")
        calls = [tree.body] if isinstance(tree.body, ast.Call) else getattr(tree.body, "elts", None)
        if calls is None or not all(isinstance(c, ast.Call) for c in calls):
            raise CallParseError("not a list of calls")
        return [_python_call(c) for c in calls]
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        if isinstance(e, CallParseError):
            raise
        raise CallParseError(f"not Python call syntax ({type(e).__name__})") from None


def _python_call(node: ast.Call) -> dict[str, dict]:
    parts = []
    func = node.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    args = {UNNAMED if kw.arg is None else kw.arg: _python_value(kw.value) for kw in node.keywords}
    return {".".join(reversed(parts)): args}


def _python_value(node: ast.expr) -> Any:
    """A keyword argument's value as BFCL's `resolve_ast_by_type` reads it, without evaluating."""
    if isinstance(node, ast.Constant):
        return "..." if node.value is Ellipsis else node.value
    if isinstance(node, ast.UnaryOp):  # BFCL negates any unary operand's constant: +5 and ~5 read -5
        if not isinstance(node.operand, ast.Constant):
            raise CallParseError("unary operator on a non-constant")
        try:
            return -node.operand.value
        except TypeError:
            raise CallParseError("unary operator on a non-number") from None
    if isinstance(node, ast.List):
        return [_python_value(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_python_value(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values, strict=True):
            if k is None:
                raise CallParseError("** in a dict")
            key = _python_value(k)
            try:
                out[key] = _python_value(v)
            except TypeError:
                raise CallParseError("unhashable dict key") from None
        return out
    if isinstance(node, ast.BinOp):
        return _arithmetic(node)
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call):
        return _python_call(node) if node.keywords else ast.unparse(node)
    if isinstance(node, ast.Subscript):
        return f"{ast.unparse(node.value)}[{ast.unparse(node.slice)}]"
    raise CallParseError(f"unsupported value {type(node).__name__}")


class _NotConstant(Exception):
    """Arithmetic that evalmap leaves as text: not over constants, or past the size bounds."""


def _arithmetic(node: ast.BinOp) -> Any:
    unknown = sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name)} - _BUILTIN_NAMES)
    if unknown:  # BFCL's eval raises NameError
        raise CallParseError(f"arithmetic on undefined name {unknown[0]!r}")
    try:
        return _constant(node)
    except _NotConstant:
        return ast.unparse(node)
    except (ArithmeticError, TypeError, ValueError) as e:  # raised by BFCL's eval as well
        raise CallParseError(f"arithmetic fails ({type(e).__name__})") from None


_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow, ast.LShift: operator.lshift,
    ast.RShift: operator.rshift, ast.BitAnd: operator.and_, ast.BitOr: operator.or_, ast.BitXor: operator.xor,
    ast.MatMult: operator.matmul,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert, ast.Not: operator.not_}


def _constant(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_constant(node.operand))
    if isinstance(node, ast.BinOp):
        left, right = _constant(node.left), _constant(node.right)
        _check_size(type(node.op), left, right)
        return _BINARY[type(node.op)](left, right)
    raise _NotConstant


def _check_size(op: type, left: Any, right: Any) -> None:
    """Raise _NotConstant before an operation whose result would pass the bounds."""
    ints = type(left) in (int, bool) and type(right) in (int, bool)
    if op is ast.Pow and ints and right > 0 and abs(left) > 1 and right * left.bit_length() > _MAX_INT_BITS:
        raise _NotConstant
    if op is ast.Mult and ints and left.bit_length() + right.bit_length() > _MAX_INT_BITS:
        raise _NotConstant
    if op is ast.LShift and ints and left and right > _MAX_INT_BITS:
        raise _NotConstant
    if op is ast.Mult and not ints:
        text, count = (left, right) if isinstance(left, str | bytes) else (right, left)
        if isinstance(text, str | bytes) and type(count) in (int, bool) and len(text) * count > _MAX_TEXT:
            raise _NotConstant
    if op is ast.Mod and isinstance(left, str | bytes):  # %-formatting can pad to any width
        raise _NotConstant


# -- native mode -------------------------------------------------------------------------------


def decode_tool_calls(calls: list[dict]) -> list[dict[str, dict]]:
    """OpenAI-style tool calls (`{"name", "arguments"}`, or wrapped in `{"function": ...}`) as BFCL's FC
    handlers decode them: the arguments are a JSON object, given as its text or already parsed."""
    out = []
    for call in calls:
        if not isinstance(call, dict):
            raise CallParseError("a tool call is not an object")
        if isinstance(call.get("function"), dict):
            call = call["function"]
        name, args = call.get("name"), call.get("arguments")
        if not isinstance(name, str) or args is None:
            raise CallParseError("a tool call without a name or arguments")
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except (ValueError, RecursionError):
                raise CallParseError(f"the arguments of {name!r} are not JSON") from None
        if not isinstance(args, dict):
            raise CallParseError(f"the arguments of {name!r} are not an object", wrong_format=True)
        out.append({name: args})
    return out


_TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


def decode_text_tool_calls(text: str) -> list[dict]:
    """The JSON tool calls a chat template with tool support makes a model write as text: Hermes/Qwen
    `<tool_call>{"name": ..., "arguments": ...}</tool_call>` blocks, each an object or a list of them (one
    that is not JSON is skipped, as BFCL's Qwen FC handler skips it), or a bare JSON object or list of them
    ("parameters" is read as "arguments"). Returns `[{"name", "arguments"}]` for `decode_tool_calls`."""
    blocks = _TOOL_CALL_BLOCK.findall(text)
    if blocks:
        found = []
        for block in blocks:
            try:
                parsed = json.loads(block)
            except (ValueError, RecursionError):
                continue
            found += parsed if isinstance(parsed, list) else [parsed]  # SmolLM2 writes a list in one block
    else:
        try:
            found = json.loads(_FENCE.sub("", text.strip()))
        except (ValueError, RecursionError):
            raise CallParseError("no tool call in the text") from None
        if isinstance(found, dict):
            found = [found]
    if not isinstance(found, list) or not found:
        raise CallParseError("no tool call in the text")
    calls = []
    for item in found:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise CallParseError("a tool call without a name")
        calls.append({"name": item["name"], "arguments": item.get("arguments", item.get("parameters", {}))})
    return calls


# BFCL's types as JSON-schema (OpenAPI) types; any other type is sent as "string".
_OPENAPI_TYPES = {
    "integer": "integer", "number": "number", "float": "number", "double": "number", "string": "string",
    "String": "string", "char": "string", "any": "string", "Any": "string", "boolean": "boolean",
    "bool": "boolean", "array": "array", "list": "array", "tuple": "array", "ArrayList": "array",
    "Array": "array", "Queue": "array", "Stack": "array", "dict": "object", "object": "object",
    "HashMap": "object", "Hashtable": "object", "byte": "integer", "short": "integer", "long": "integer",
    "Bigint": "integer",
}


def openai_tools(functions: list[dict]) -> list[dict]:
    """BFCL function docs as OpenAI `tools`, as BFCL's `convert_to_tool` makes them for OpenAI-style models:
    "." in names becomes "_" (names must match ^[a-zA-Z0-9_-]{1,64}$), types become JSON-schema types and
    a float says so in its description."""
    tools = []
    for doc in copy.deepcopy(functions):
        doc["name"] = doc["name"].replace(".", "_")
        doc["parameters"]["type"] = "object"
        _openapi_properties(doc["parameters"].get("properties", {}))
        tools.append({"type": "function", "function": doc})
    return tools


def _openapi_properties(properties: dict) -> None:
    for schema in properties.values():
        kind = schema.get("type", "string")
        if kind == "float":
            schema["format"] = "float"
            schema["description"] = schema.get("description", "") + " This is a float type value."
        schema["type"] = _OPENAPI_TYPES.get(kind, "string")
        if schema["type"] not in ("array", "object"):
            continue
        if "properties" in schema:
            _openapi_properties(schema["properties"])
        elif "items" in schema:
            items = schema["items"]
            items["type"] = _OPENAPI_TYPES.get(items.get("type"), "string")
            if items["type"] == "array" and "items" in items:
                items["items"]["type"] = _OPENAPI_TYPES.get(items["items"].get("type"), "string")
            elif items["type"] == "object" and "properties" in items:
                _openapi_properties(items["properties"])


# -- the check ---------------------------------------------------------------------------------


class _Reject(Exception):
    def __init__(self, reason: str, error_type: str, message: str):
        super().__init__(message)
        self.verdict = Verdict(False, reason, error_type, message)


def check_entry(
    category: str,
    functions: list[dict],
    possible_answer: list[dict] | None,
    output: str | list[dict],
    *,
    language: str,
    underscore_to_dot: bool,
) -> Verdict:
    """BFCL's verdict on one answer. `output` is prompt-mode text or native tool calls (a native answer
    without tool calls is `[]`); `underscore_to_dot`: the calls came through native tools, so a
    function named "a.b" is expected as "a_b"."""
    if "relevance" in category:  # irrelevance, live_irrelevance, live_relevance: Python syntax in BFCL
        return _check_relevance(category, output)
    try:
        calls = decode_prompt_output(output, language) if isinstance(output, str) else decode_tool_calls(output)
    except CallParseError as e:
        kind = "decoder_wrong_output_format" if e.wrong_format else "decoder_failed"
        return Verdict(False, "unparsable", f"ast_decoder:{kind}", f"undecodable answer: {e}")
    try:
        _check_calls(category, functions, possible_answer or [], calls, language, underscore_to_dot)
    except _Reject as r:
        return r.verdict
    return Verdict(True)


def _check_relevance(category: str, output: str | list[dict]) -> Verdict:
    try:
        calls = decode_prompt_output(output, "python") if isinstance(output, str) else decode_tool_calls(output)
        note = f"{len(calls)} call(s)" if calls else "no call"
    except CallParseError as e:
        calls, note = [], f"undecodable answer, counted as no call: {e}"
    if "irrelevance" in category:
        if calls:
            return Verdict(False, "call_in_irrelevance", "irrelevance_error:decoder_success", f"a call: {calls[0]}")
        return Verdict(True, message=note)
    if not calls:
        return Verdict(False, "no_call", "relevance_error:decoder_failed", note)
    return Verdict(True, message=note)


def _check_calls(category, functions, answers, calls, language, underscore_to_dot) -> None:
    if "parallel" in category:
        _count(calls, answers, "parallel_function_checker_no_order")
        matched: set[int] = set()
        for expected in answers:
            doc = _doc(functions, next(iter(expected)))
            misses = []
            for i, call in enumerate(calls):
                if i in matched:
                    continue
                try:
                    _check_call(doc, call, expected, language, underscore_to_dot)
                except _Reject as r:
                    misses.append(f"#{i}: {r.verdict.message}")
                    continue
                matched.add(i)
                break
            else:
                raise _Reject(
                    "no_match", "parallel_function_checker_no_order:cannot_find_match",
                    f"no call matches the expected {next(iter(expected))!r} ({'; '.join(misses)})",
                )
    elif "multiple" in category:
        _count(calls, answers, "multiple_function_checker")
        _check_call(_doc(functions, next(iter(answers[0]))), calls[0], answers[0], language, underscore_to_dot)
    else:
        _count(calls, [None], "simple_function_checker")
        _check_call(functions[0], calls[0], answers[0], language, underscore_to_dot)


def _count(calls: list, answers: list, checker: str) -> None:
    if len(calls) != len(answers):
        raise _Reject("wrong_count", f"{checker}:wrong_count", f"{len(calls)} call(s), expected {len(answers)}")


def _doc(functions: list[dict], name: str) -> dict:
    doc = next((f for f in functions if f["name"] == name), None)
    if doc is None:
        raise ValueError(f"the possible answer names {name!r}, which is not among the functions")
    return doc


def _check_call(doc: dict, call: dict, expected: dict, language: str, underscore_to_dot: bool) -> None:
    allowed_by_param = next(iter(expected.values()))
    name = doc["name"].replace(".", "_") if underscore_to_dot else doc["name"]
    if name not in call:
        raise _Reject("wrong_name", "simple_function_checker:wrong_func_name",
                      f"expected a call to {name!r}, got {next(iter(call), '')!r}")
    args = call[name]
    schema = doc["parameters"]["properties"]
    for param in doc["parameters"].get("required", []):
        if param not in args:
            raise _Reject("missing_param", "simple_function_checker:missing_required",
                          f"{name}: required parameter {param!r} is missing")
    for param, value in args.items():
        if param not in schema or param not in allowed_by_param:
            raise _Reject("unexpected_param", "simple_function_checker:unexpected_param",
                          f"{name}: unexpected parameter {param!r}")
        _check_value(f"{name}.{param}", value, schema[param], allowed_by_param[param], language)
    for param, allowed in allowed_by_param.items():
        if param not in args and "" not in allowed:
            raise _Reject("missing_param", "simple_function_checker:missing_optional",
                          f"{name}: parameter {param!r} is optional in the docs but the answer needs it")


# The Python type a BFCL type's value must have, per language; an array's items are type-checked one level.
_PYTHON_TYPES = {"string": str, "integer": int, "float": float, "boolean": bool, "array": list, "tuple": list,
                 "dict": dict, "any": str}
_JAVA_TYPES = {"byte": int, "short": int, "integer": int, "float": float, "double": float, "long": int,
               "boolean": bool, "char": str, "Array": list, "ArrayList": list, "Set": set, "HashMap": dict,
               "Hashtable": dict, "Queue": list, "Stack": list, "String": str, "any": str}
_JS_TYPES = {"String": str, "integer": int, "float": float, "Bigint": int, "Boolean": bool, "dict": dict,
             "array": list, "any": str}


def _check_value(where: str, value: Any, schema: dict, allowed: list, language: str) -> None:
    kind = schema["type"]
    item_type = None
    if language == "python":
        expected = _known(_PYTHON_TYPES, kind)
        if kind in ("array", "tuple"):
            item_type = _known(_PYTHON_TYPES, schema["items"]["type"])
    else:  # Java and JavaScript values are source text, converted by their declared type
        table, convert = (_JAVA_TYPES, syntax.java_value) if language == "java" else (_JS_TYPES, syntax.js_value)
        expected = _known(table, kind)
        if type(value) is not str:
            raise _Reject("type", f"type_error:{'java' if language == 'java' else 'js'}",
                          f"{where}: expected {kind} source text, got {type(value).__name__} {value!r}")
        if kind in ("Array", "ArrayList", "array"):
            item_name = schema["items"]["type"]
            item_type = _known(table, item_name)
            value = convert(value, kind, item_name)
        else:
            value = convert(value, kind)
    if kind == "tuple" and type(value) is tuple:
        value = list(value)
    if language == "python" and kind == "float" and type(value) is int:
        try:
            value = float(value)
        except OverflowError:
            raise _Reject("type", "type_error:simple", f"{where}: {value} is too large for a float") from None
    if _is_variable(where, value, allowed, kind, expected, item_type):
        pass  # the answer names a variable (a string where the type says otherwise): compared as is
    elif expected is dict:
        return _check_dict(where, value, allowed)
    elif expected is list and item_type is dict:
        return _check_dict_list(where, value, allowed)
    elif expected is str:
        if _standard(value) not in [_standard(a) for a in allowed if type(a) is str]:
            raise _Reject("value", "value_error:string", f"{where}: {value!r} is not one of {allowed!r}")
        return None
    elif expected is list:
        got = [_standard(v) if type(v) is str else v for v in value]
        if got not in [[_standard(x) if type(x) is str else x for x in a] for a in allowed]:
            raise _Reject("value", "value_error:list/tuple", f"{where}: {value!r} is not one of {allowed!r}")
        return None
    if value not in allowed:
        raise _Reject("value", "value_error:others", f"{where}: {value!r} is not one of {allowed!r}")
    return None


def _known(table: dict, kind: str) -> type:
    if kind not in table:
        raise ValueError(f"unsupported parameter type {kind!r}")
    return table[kind]


def _answer_type(allowed: list) -> type | None:
    return next((type(a) for a in allowed if a != ""), None)


def _is_variable(where: str, value: Any, allowed: list, kind: str, expected: type, item_type: type | None) -> bool:
    """BFCL's type check. True when the allowed values are of another type than the declared one (a
    variable's name, as BFCL writes them): the value is then compared as is, not normalised."""
    answer_type = _answer_type(allowed)
    variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        if item_type is None or any(
            type(a) is not list or all(_item_ok(v, a, item_type) for v in value) for a in allowed
        ):
            return variable
        if type(value) is answer_type:
            raise _Reject("type", "type_error:nested", f"{where}: an item of {value!r} is not {item_type.__name__}")
    elif answer_type is not None and type(value) is answer_type:
        return True
    raise _Reject("type", "type_error:simple", f"{where}: expected {kind}, got {type(value).__name__} {value!r}")


def _item_ok(item: Any, allowed: list, item_type: type) -> bool:
    return type(item) is item_type or type(item) is _answer_type(allowed)


def _standard(text: str) -> str:
    """BFCL's string normalisation: no spaces or ,./-_*^, lower case, ' read as "."""
    return re.sub(r"[ ,./\-_*^]", "", text).lower().replace("'", '"')


def _check_dict(where: str, value: Any, allowed: list) -> None:
    failure = _Reject("value", "dict_checker:unclear", f"{where}: {value!r} matches no allowed dict")
    if not isinstance(value, dict):
        raise failure
    for option in allowed:
        if option == "":
            continue
        failure = None
        for key, v in value.items():
            if key not in option:
                failure = _Reject("value", "value_error:dict_key", f"{where}: unexpected key {key!r}")
                break
            if (_standard(v) if type(v) is str else v) not in [_standard(x) if type(x) is str else x
                                                                 for x in option[key]]:
                failure = _Reject("value", "value_error:dict_value",
                                  f"{where}[{key!r}]: {v!r} is not one of {option[key]!r}")
                break
        for key, options in option.items():
            if key not in value and "" not in options:
                failure = _Reject("value", "value_error:dict_key", f"{where}: key {key!r} is missing")
                break
        if failure is None:
            return
    raise failure


def _check_dict_list(where: str, value: list, allowed: list) -> None:
    failure = _Reject("value", "list_dict_checker:unclear", f"{where}: {value!r} matches no allowed list")
    for option in allowed:
        if len(value) != len(option):
            failure = _Reject("value", "value_error:list_dict_count",
                              f"{where}: {len(value)} dicts, expected {len(option)}")
            continue
        try:
            for item, expected in zip(value, option, strict=True):
                _check_dict(where, item, [expected])
        except _Reject as r:
            failure = r
            continue
        return
    raise failure


# -- a right answer ------------------------------------------------------------------------------


def answer_calls(possible_answer: list[dict], functions: list[dict]) -> list[dict[str, dict]]:
    """One right answer, decoded: each expected call with the first allowed value of each parameter. A
    parameter whose first allowed value is "" is left out, unless the docs require it (then its first
    other value); so is one the docs lack when "" is allowed. Dict values pick their keys' first values."""
    docs = {f["name"]: f["parameters"] for f in functions}
    calls = []
    for expected in possible_answer:
        name, allowed_by_param = next(iter(expected.items()))
        doc = docs.get(name, {})
        schema, required = doc.get("properties", {}), doc.get("required", [])
        args = {}
        for param, allowed in allowed_by_param.items():
            values = [v for v in allowed if v != ""]
            if not values or (allowed[0] == "" and param not in required) or ("" in allowed and param not in schema):
                continue
            args[param] = _pick(values[0], schema.get(param, {}))
        calls.append({name: args})
    return calls


def _pick(value: Any, schema: dict) -> Any:
    kind = schema.get("type")
    if kind in ("dict", "HashMap") and isinstance(value, dict):
        return {k: v[0] for k, v in value.items() if isinstance(v, list) and v and v[0] != ""}
    if isinstance(value, list) and schema.get("items", {}).get("type") == "dict":
        return [_pick(v, {"type": "dict"}) for v in value]
    return value


def format_calls(calls: list[dict[str, dict]], functions: list[dict], language: str) -> str:
    """Prompt-mode text that decodes to `calls` (the inverse of decode_prompt_output): a Python list of
    calls, or one Java / JavaScript call with each value written for its declared type."""
    docs = {f["name"]: f["parameters"]["properties"] for f in functions}
    texts = []
    for call in calls:
        name, args = next(iter(call.items()))
        schema = docs.get(name, {})
        if language == "python":
            texts.append(f"{name}({', '.join(f'{k}={v!r}' for k, v in args.items())})")
        else:
            source = _java_source if language == "java" else _js_source
            texts.append(f"{name}({', '.join(f'{k}={source(v, schema.get(k, {}))}' for k, v in args.items())})")
    return f"[{', '.join(texts)}]"


_JAVA_ITEM_TYPES = {"integer": "int", "long": "long", "float": "float", "double": "double", "boolean": "boolean",
                    "char": "char", "String": "String", "byte": "byte", "short": "short"}


def _java_source(value: Any, schema: dict) -> str:
    kind = schema.get("type", "any")
    item = schema.get("items", {}).get("type", "any")
    if kind in ("Array", "ArrayList") and isinstance(value, list):
        items = ", ".join(_java_source(v, {"type": item}) for v in value)
        if kind == "Array":
            return f"new {_JAVA_ITEM_TYPES.get(item, 'Object')}[]{{{items}}}"
        return f"new ArrayList<>(Arrays.asList({items}))" if value else "new ArrayList<>()"
    if kind == "HashMap" and isinstance(value, dict):
        puts = " ".join(f"put({_java_literal(k)}, {_java_source(v, {})});" for k, v in value.items())
        return f"new HashMap<String, Object>() {{{{ {puts} }}}}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # a value holding quotes is Java source (`new A("b")`), written as such
        return f"'{value}'" if kind == "char" else value if '"' in value else _java_literal(value)
    suffix = {"long": "L", "float": "f"}.get(kind, "")
    return f"{value}{suffix}"


def _java_literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _js_source(value: Any, schema: dict) -> str:
    kind = schema.get("type", "any")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return format(float(repr(value)), "f") if "e" in repr(value) else repr(value)
    if isinstance(value, int):
        return f"{value}n" if kind == "Bigint" else str(value)
    if isinstance(value, list):
        item = {"type": schema.get("items", {}).get("type", "any")}
        return "[" + ", ".join(_js_source(v, item) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_js_source(v, {})}" for k, v in value.items()) + "}"
    return "null" if value is None else str(value)
