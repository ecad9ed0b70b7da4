"""Java and JavaScript calls read as BFCL reads them, by a hand-written parser instead of tree-sitter.

BFCL (`model_handler/parser/java_parser.py`, `js_parser.py`) parses a prompt-mode answer with
tree-sitter, refuses it when the tree holds an ERROR node, and takes the first call. Each argument
`name=value` gives the value as source text, which the checker converts by the parameter's declared
type (`eval_checker/ast_eval/type_convertor`, here `java_value` / `js_value`). JavaScript values are
the verbatim source. Java values are tree-sitter's text walk: tokens joined without spaces, except
method calls and class literals (verbatim), `new T[]{...}` and `new T(args)` (rebuilt, the anonymous
class body of `new HashMap<>() {{ put(..); }}` dropped) and a top-level string or char literal (its
quotes cut off). An argument that is a bare identifier (or, in JavaScript, `true`) is kept under
UNNAMED; other unnamed arguments are ignored; a repeated name fails.

The parsers cover the expression syntax of call arguments (literals, names, member access, calls, `new`,
arrays, object literals, casts, lambdas / arrow functions with their bodies skipped as balanced
brackets, unary / binary / ternary operators, assignments); statements are expressions, a `let` /
`const` / `var` declaration in JavaScript. Where a ";" is missing, tree-sitter's error recovery decides
between an ERROR and an inserted ";"; it is followed as measured on tree-sitter-java 0.21.0 /
-javascript 0.21.4: a lone Java statement of at most 10 bytes (`foo(a=1)`) is an ERROR; after a
statement with no ";" (in JavaScript, on the same line) a next token of at most 9 bytes that the token
after it would continue (`a.b(c=1) Def.e(f=2)`) is an ERROR, a longer one starts a new statement; a Java
trailing comma is a MISSING identifier (an unnamed empty argument), an unclosed "(" before a "," a
MISSING ")" (unless it holds a name, dotted or not), an unclosed array or object before the call's ")" a
MISSING "]" / "}"; in JavaScript `!a = 1` is `!(a = 1)` and `a - b = 1` is `a - (b = 1)`; a dotted name
with no ";" is an ERROR. Text that is not call syntax at all (prose, other statements, class bodies) can
fail here as "decoder_failed" where tree-sitter parses it without ERROR and finds no call
("decoder_wrong_output_format"), or the reverse: both are wrong answers, with another label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# The key under which an unnamed argument is kept (BFCL keys it None).
UNNAMED = "<unnamed>"


class CallParseError(ValueError):
    """An answer that does not decode to calls; `wrong_format`: it parsed but holds no call (BFCL's
    "decoder_wrong_output_format" rather than "decoder_failed")."""

    def __init__(self, reason: str, *, wrong_format: bool = False):
        super().__init__(reason)
        self.wrong_format = wrong_format


# -- tokens ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # name, number, string, char, template, regex, op, eof
    text: str
    start: int
    end: int
    newline: bool = False  # a line break between this token and the one before


_JAVA_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?\d+)?[lLfFdD]?|0[bB][01_]+[lL]?"
    r"|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?[lLfFdD]?"
)
_JS_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F_]+n?|0[oO][0-7_]+n?|0[bB][01_]+n?"
    r"|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?n?"
)


def _longest_first(ops: str) -> list[str]:
    return sorted(ops.split(), key=len, reverse=True)


# ">" is always single in Java: `List<List<T>>` closes two type lists; `>>`, `>=` are rebuilt by the parser.
_JAVA_OPS = _longest_first(
    "<<= -> :: ++ -- && || == != <= += -= *= /= %= &= |= ^= << ... + - * / % = < > ! ~ ? : ; , . ( ) [ ] { } & | ^ @"
)
_JS_OPS = _longest_first(
    ">>>= ... === !== **= <<= >>= >>> &&= ||= ??= => == != <= >= && || ?? ?. ++ -- += -= *= /= %= &= |= ^= "
    "** << >> + - * / % = < > ! ~ ? : ; , . ( ) [ ] { } & | ^ @ #"
)
# After these a JavaScript "/" divides; elsewhere it starts a regular expression.
_JS_OPERAND_END = {")", "]", "}"}
_JS_KEYWORDS_BEFORE_REGEX = {"return", "typeof", "instanceof", "in", "of", "new", "delete", "void", "throw",
                             "case", "do", "else", "yield", "await"}


def _tokens(src: str, js: bool) -> list[Token]:
    out: list[Token] = []
    i, n, newline = 0, len(src), False
    ops = _JS_OPS if js else _JAVA_OPS
    while True:
        while i < n:  # spaces and comments
            c = src[i]
            if c in " \t\r\f\v\u00a0\ufeff":
                i += 1
            elif c in "\n\u2028\u2029":
                newline, i = True, i + 1
            elif src.startswith("//", i):
                while i < n and src[i] != "\n":
                    i += 1
            elif src.startswith("/*", i):
                end = src.find("*/", i + 2)
                if end < 0:
                    raise CallParseError("unterminated comment")
                newline = newline or "\n" in src[i:end]
                i = end + 2
            else:
                break
        if i >= n:
            out.append(Token("eof", "", n, n, newline))
            return out
        c, start = src[i], i
        if c.isalpha() or c in "_$":
            i += 1
            while i < n and (src[i].isalnum() or src[i] in "_$"):
                i += 1
            kind = "name"
        elif c.isdigit() or (c == "." and i + 1 < n and src[i + 1].isdigit()):
            m = (_JS_NUMBER if js else _JAVA_NUMBER).match(src, i)
            i, kind = m.end(), "number"
        elif c == '"' and not js and src.startswith('"""', i):
            end = src.find('"""', i + 3)
            if end < 0:
                raise CallParseError("unterminated text block")
            i, kind = end + 3, "string"
        elif c in "\"'":
            i, kind = _quoted(src, i, c), ("char" if c == "'" and not js else "string")
        elif c == "`" and js:
            i, kind = _template(src, i), "template"
        elif c == "/" and js and _regex_allowed(out):
            i, kind = _regex(src, i), "regex"
        else:
            op = next((o for o in ops if src.startswith(o, i)), None)
            if op is None:
                raise CallParseError(f"unexpected character {c!r}")
            i, kind = i + len(op), "op"
        out.append(Token(kind, src[start:i], start, i, newline))
        newline = False


def _quoted(src: str, i: int, quote: str) -> int:
    j = i + 1
    while j < len(src):
        c = src[j]
        if c == "\\":
            j += 2
            continue
        if c == quote:
            return j + 1
        j += 1  # a raw line break inside is taken too, as tree-sitter takes it
    raise CallParseError("unterminated string")


def _template(src: str, i: int) -> int:
    j = i + 1
    while j < len(src):
        c = src[j]
        if c == "\\":
            j += 2
        elif c == "`":
            return j + 1
        elif src.startswith("${", j):
            j = _balanced_source(src, j + 1)
        else:
            j += 1
    raise CallParseError("unterminated template")


def _balanced_source(src: str, i: int) -> int:
    """The index after the "}" closing the "{" at i, skipping strings and templates."""
    depth, j = 0, i
    while j < len(src):
        c = src[j]
        if c in "\"'":
            j = _quoted(src, j, c)
            continue
        if c == "`":
            j = _template(src, j)
            continue
        depth += (c == "{") - (c == "}")
        j += 1
        if depth == 0:
            return j
    raise CallParseError("unbalanced braces in a template")


def _regex_allowed(before: list[Token]) -> bool:
    if not before:
        return True
    last = before[-1]
    if last.kind in ("number", "string", "template", "regex"):
        return False
    if last.kind == "name":
        return last.text in _JS_KEYWORDS_BEFORE_REGEX
    return last.text not in _JS_OPERAND_END


def _regex(src: str, i: int) -> int:
    j, in_class = i + 1, False
    while j < len(src) and src[j] != "\n":
        c = src[j]
        if c == "\\":
            j += 2
            continue
        if c == "[":
            in_class = True
        elif c == "]":
            in_class = False
        elif c == "/" and not in_class:
            j += 1
            while j < len(src) and (src[j].isalnum() or src[j] in "_$"):
                j += 1
            return j
        j += 1
    raise CallParseError("unterminated regular expression")


# -- trees -------------------------------------------------------------------------------------


@dataclass
class Node:
    kind: str
    start: int
    end: int
    parts: list = field(default_factory=list)  # the Nodes and Tokens it is made of, in source order
    info: dict = field(default_factory=dict)


def _node(kind: str, parts: list, **info: Any) -> Node:
    return Node(kind, parts[0].start, parts[-1].end, parts, info)


class _Parser:
    def __init__(self, src: str, js: bool):
        self.src, self.js = src, js
        self.toks = _tokens(src, js)
        self.i = 0

    def peek(self, k: int = 0) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def at(self, *texts: str) -> bool:
        t = self.peek()
        return t.kind in ("op", "name") and t.text in texts

    def take(self) -> Token:
        t = self.peek()
        if t.kind == "eof":
            raise CallParseError("unexpected end")
        self.i += 1
        return t

    def expect(self, text: str) -> Token:
        if not self.at(text):
            raise CallParseError(f"expected {text!r} at {self.peek().start}")
        return self.take()

    def fail(self) -> CallParseError:
        t = self.peek()
        return CallParseError(f"unexpected {t.text or 'end'!r} at {t.start}")

    def absorbed(self, continuing: frozenset[str]) -> bool:
        """tree-sitter's recovery after a statement with no ";": a next token of at most 9 bytes that the one
        after it would continue (`a.b(c=1) D.e(f=2)`) is skipped as an ERROR, the rest joining the statement;
        from 10 bytes on, a missing ";" is inserted instead (measured on tree-sitter-java 0.21.0, -javascript
        0.21.4)."""
        after = self.peek(1)
        return len(self.peek().text.encode()) <= 9 and (after.text in continuing or after.kind == "template")

    def balanced(self) -> list[Token]:
        """The tokens from an opening bracket to its closing one, unchecked inside (a body)."""
        pairs = {"(": ")", "[": "]", "{": "}"}
        stack, out = [], []
        while True:
            t = self.take()
            out.append(t)
            if t.kind == "op" and t.text in pairs:
                stack.append(pairs[t.text])
            elif t.kind == "op" and t.text in (")", "]", "}"):
                if not stack or stack.pop() != t.text:
                    raise CallParseError("unbalanced brackets")
                if not stack:
                    return out

    def closing_paren(self) -> int:
        """The token index of the ")" matching the "(" at the current token."""
        depth = 0
        for k in range(self.i, len(self.toks)):
            t = self.toks[k]
            if t.kind == "op" and t.text in ("(", "[", "{"):
                depth += 1
            elif t.kind == "op" and t.text in (")", "]", "}"):
                depth -= 1
                if depth == 0:
                    return k
        return -1


# -- Java --------------------------------------------------------------------------------------

_JAVA_PRIMITIVES = {"int", "long", "short", "byte", "char", "boolean", "float", "double", "void"}
_JAVA_LITERALS = {"true", "false", "null", "this", "super"}
_JAVA_ASSIGN = {"=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>=", ">>>="}
_JAVA_BINARY = [["||"], ["&&"], ["|"], ["^"], ["&"], ["==", "!="], ["<", ">", "<=", ">=", "instanceof"],
                ["<<", ">>", ">>>"], ["+", "-"], ["*", "/", "%"]]
_JAVA_RESERVED = _JAVA_PRIMITIVES | {"new", "instanceof", "class", "return", "if", "else", "for", "while"}
_JAVA_CONTINUING = frozenset({".", "[", "::", "?", "++", "--", *(op for level in _JAVA_BINARY for op in level)})


class _Java(_Parser):
    def program(self) -> list[Node]:
        statements, ended = [], True
        while self.peek().kind != "eof":
            if self.at(";"):
                self.take()
                continue
            if not ended and self.peek().kind == "name" and self.absorbed(_JAVA_CONTINUING):
                raise CallParseError(f"{self.peek().text!r} after a statement without ';' (an ERROR in tree-sitter)")
            statements.append(self.expression())
            ended = self.at(";")
            if ended:
                self.take()
            elif _dotted_name(statements[-1]):  # `A.b` with no ";" reads as a declaration's type: an ERROR
                raise CallParseError("a dotted name without ';' (an ERROR in tree-sitter)")
        # and a lone statement without ";" becomes an ERROR when it is this short (measured likewise)
        if len(statements) == 1 and not ended and len(self.src[statements[0].start:].encode()) <= 10:
            raise CallParseError("a short statement without ';' (an ERROR in tree-sitter)")
        return statements

    def operator(self) -> tuple[str, list[Token]]:
        """The binary or assignment operator here, rebuilt from single ">" tokens."""
        t = self.peek()
        if t.kind == "name" and t.text == "instanceof":
            return "instanceof", [t]
        if t.kind != "op":
            return "", []
        if t.text != ">":
            return t.text, [t]
        toks = [t]
        while len(toks) < 3 and self.peek(len(toks)).text == ">" and self.peek(len(toks)).start == toks[-1].end:
            toks.append(self.peek(len(toks)))
        nxt = self.peek(len(toks))
        if nxt.text == "=" and nxt.start == toks[-1].end:
            toks.append(nxt)
        return "".join(x.text for x in toks), toks

    def expression(self) -> Node:
        lam = self.lambda_expression()
        if lam is not None:
            return lam
        left = self.conditional()
        op, toks = self.operator()
        if op in _JAVA_ASSIGN:
            self.i += len(toks)
            right = self.expression()
            return _node("assignment", [left, *toks, right], left=left, right=right)
        return left

    def lambda_expression(self) -> Node | None:
        t = self.peek()
        if t.kind == "name" and self.peek(1).text == "->":
            params = [self.take()]
        elif self.at("("):
            close = self.closing_paren()
            if close < 0 or self.toks[close + 1].text != "->":
                return None
            params = self.balanced()
        else:
            return None
        arrow = self.take()
        body = self.balanced() if self.at("{") else [self.expression()]
        return _node("lambda", [*params, arrow, *body])

    def conditional(self) -> Node:
        cond = self.binary(0)
        if not self.at("?"):
            return cond
        q = self.take()
        yes = self.expression()
        colon = self.expect(":")
        no = self.lambda_expression() or self.conditional()
        return _node("ternary", [cond, q, yes, colon, no])

    def binary(self, level: int) -> Node:
        if level == len(_JAVA_BINARY):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            op, toks = self.operator()
            if op not in _JAVA_BINARY[level]:
                return left
            self.i += len(toks)
            if op == "instanceof":
                if self.at("final"):
                    toks.append(self.take())
                right = self.type()
                if self.peek().kind == "name" and self.peek().text not in _JAVA_RESERVED:
                    right = _node("pattern", [right, self.take()])
            else:
                right = self.binary(level + 1)
            left = _node("binary", [left, *toks, right])

    def unary(self) -> Node:
        if self.at("+", "-", "!", "~", "++", "--"):
            op = self.take()
            return _node("unary", [op, self.unary()])
        cast = self.cast()
        return cast if cast is not None else self.postfix(self.primary())

    def cast(self) -> Node | None:
        if not self.at("("):
            return None
        save = self.i
        open_ = self.take()
        primitive = self.peek().text in _JAVA_PRIMITIVES
        try:
            kind = self.type()
            close = self.expect(")")
        except CallParseError:
            self.i = save
            return None
        nxt = self.peek()
        operand = nxt.kind in ("name", "number", "string", "char") or nxt.text in ("(", "!", "~")
        if primitive and nxt.text in ("+", "-", "++", "--"):
            operand = True
        if not operand or (nxt.kind == "name" and nxt.text == "instanceof"):
            self.i = save
            return None
        value = self.lambda_expression() or self.unary()
        return _node("cast", [open_, kind, close, value])

    def type(self, dims: bool = True) -> Node:
        parts: list = []
        while self.at("@"):
            parts += [self.take(), self.take()]
        t = self.take()
        if t.kind != "name" or t.text in _JAVA_RESERVED - _JAVA_PRIMITIVES:
            raise CallParseError(f"expected a type at {t.start}")
        parts.append(t)
        if t.text not in _JAVA_PRIMITIVES:
            while True:
                if self.at("<"):
                    parts += self.type_arguments()
                if self.at(".") and self.peek(1).kind == "name" and self.peek(1).text != "class":
                    parts += [self.take(), self.take()]
                    continue
                break
        while dims and self.at("[") and self.peek(1).text == "]":
            parts += [self.take(), self.take()]
        return _node("type", parts)

    def type_arguments(self) -> list:
        parts: list = [self.expect("<")]
        while not self.at(">"):
            if self.at("?"):
                parts.append(self.take())
                if self.at("extends", "super"):
                    parts += [self.take(), self.type()]
            else:
                parts.append(self.type())
            if not self.at(">"):
                parts.append(self.expect(","))
        parts.append(self.take())
        return parts

    def arguments(self) -> tuple[list, list[Node]]:
        parts: list = [self.expect("(")]
        args = []
        while not self.at(")"):
            args.append(self.expression())
            parts.append(args[-1])
            if not self.at(","):
                break
            parts.append(self.take())
            if self.at(")"):  # tree-sitter inserts a MISSING identifier, an unnamed empty argument
                args.append(Node("identifier", parts[-1].end, parts[-1].end))
        parts.append(self.expect(")"))
        return parts, args

    def primary(self) -> Node:
        t = self.peek()
        if t.kind in ("number", "string", "char"):
            return _node("string" if t.kind == "string" else t.kind, [self.take()])
        if t.kind != "name":
            if self.at("("):
                open_ = self.take()
                inner = self.expression()
                if self.at(",") and inner.kind != "identifier" and not _dotted_name(inner):
                    return _node("parenthesized", [open_, inner])  # tree-sitter inserts a MISSING ")"
                return _node("parenthesized", [open_, inner, self.expect(")")])
            raise self.fail()
        if t.text == "new":
            return self.creation()
        if t.text in _JAVA_PRIMITIVES:  # int.class, int[].class, int[]::new
            kind = self.type()
            if self.at("::"):
                return _node("method_reference", [kind, self.take(), self.take()])
            dot, cls = self.expect("."), self.expect("class")
            return _node("class_literal", [kind, dot, cls])
        if t.text in _JAVA_RESERVED:
            raise self.fail()
        name = self.take()
        if t.text in _JAVA_LITERALS:
            return _node(t.text, [name])
        if self.at("("):
            parts, args = self.arguments()
            return _node("method_invocation", [name, *parts], object=None, name=name, args=args)
        return _node("identifier", [name])

    def creation(self) -> Node:
        new = self.take()
        kind = self.type(dims=False)
        if self.at("["):
            dims: list = []
            sized = False
            while self.at("["):
                open_ = self.take()
                if self.at("]"):
                    dims += [open_, self.take()]
                else:
                    sized = True
                    dims += [open_, self.expression(), self.expect("]")]
            init = None if sized or not self.at("{") else self.array_initializer()
            if init is None and not sized:
                raise self.fail()
            return _node("array_creation", [new, kind, *dims, *([init] if init else [])], type=kind, init=init)
        parts, args = self.arguments()
        body = self.class_body() if self.at("{") else []
        return _node("object_creation", [new, kind, *parts, *body], type=kind, args=args)

    def class_body(self) -> list:
        """An anonymous class body: initializer blocks (`{{ put("k", 1); }}`) are parsed, other members
        (methods, fields) skipped as balanced brackets."""
        if self.peek(1).text != "{":
            return self.balanced()
        parts: list = [self.take()]
        while self.at("{"):
            parts.append(self.take())
            while not self.at("}"):
                if not self.at(";"):
                    parts.append(self.expression())
                if not self.at("}"):  # a ";" may be missing before the "}" only
                    parts.append(self.expect(";"))
            parts.append(self.take())
        parts.append(self.expect("}"))
        return parts

    def array_initializer(self) -> Node:
        parts: list = [self.expect("{")]
        while not self.at("}"):
            parts.append(self.array_initializer() if self.at("{") else self.expression())
            if self.at(")"):  # tree-sitter inserts a MISSING "}" before the call's ")"
                return _node("array_initializer", parts)
            if not self.at("}"):
                parts.append(self.expect(","))
        parts.append(self.take())
        return _node("array_initializer", parts)

    def postfix(self, node: Node) -> Node:
        while True:
            if self.at("."):
                dot = self.take()
                if self.at("<"):  # A.<T>m(...)
                    targs = self.type_arguments()
                    name = self.take()
                    parts, args = self.arguments()
                    node = _node("method_invocation", [node, dot, *targs, name, *parts],
                                 object=node, name=name, args=args)
                    continue
                name = self.take()
                if name.text == "class":
                    node = _node("class_literal", [node, dot, name])
                elif name.text == "new":
                    node = _node("object_creation_qualified", [node, dot, *self.creation_after_new(name)])
                elif name.kind != "name":
                    raise CallParseError(f"expected a name at {name.start}")
                elif self.at("("):
                    parts, args = self.arguments()
                    node = _node("method_invocation", [node, dot, name, *parts], object=node, name=name, args=args)
                else:
                    node = _node("field_access", [node, dot, name])
            elif self.at("[") and self.peek(1).text == "]":  # String[].class, String[]::new
                node = _node("array_type", [node, self.take(), self.take()])
            elif self.at("["):
                open_ = self.take()
                node = _node("array_access", [node, open_, self.expression(), self.expect("]")])
            elif self.at("::"):
                node = _node("method_reference", [node, self.take(), self.take()])
            elif self.at("++", "--"):
                node = _node("update", [node, self.take()])
            else:
                return node

    def creation_after_new(self, new: Token) -> list:
        kind = self.type()
        parts, _ = self.arguments()
        body = self.class_body() if self.at("{") else []
        return [kind, *parts, *body]


def _dotted_name(node: Node) -> bool:
    return node.kind == "field_access" and (node.parts[0].kind == "identifier" or _dotted_name(node.parts[0]))


def _java_text(node: Node | Token, src: str, nested: bool = True) -> str:
    """BFCL's text of a Java value node (its java_parser's traverse_node)."""
    if isinstance(node, Token):
        return node.text
    if node.kind in ("string", "char"):
        text = node.parts[0].text
        return text if nested else text[1:-1]
    if node.kind in ("identifier", "method_invocation", "class_literal"):
        return src[node.start:node.end]
    if node.kind == "array_creation":
        if node.info["init"] is None:
            raise CallParseError("an array creation without values")  # BFCL fails on it too
        return f"new {_java_text(node.info['type'], src)}[]{_java_text(node.info['init'], src)}"
    if node.kind == "object_creation":
        args = ", ".join(_java_text(a, src) for a in node.info["args"])
        return f"new {_java_text(node.info['type'], src)}({args})"
    return "".join(_java_text(p, src) for p in node.parts)


def _first(nodes: list, kind: str) -> Node | None:
    for node in nodes:
        if isinstance(node, Node):
            if node.kind == kind:
                return node
            found = _first(node.parts, kind)
            if found is not None:
                return found
    return None


def parse_java(src: str) -> list[dict[str, dict]]:
    """The first Java method call in `src`, as BFCL's tree-sitter decoder reads it."""
    try:
        statements = _Java(src, js=False).program()
    except RecursionError:
        raise CallParseError("nested too deeply") from None
    call = _first(statements, "method_invocation")
    if call is None:
        raise CallParseError("no method call", wrong_format=True)
    name = call.info["name"].text
    if call.info["object"] is not None:
        obj = call.info["object"]
        name = f"{src[obj.start:obj.end]}.{name}"
    args: dict[str, Any] = {}
    for arg in call.info["args"]:
        if arg.kind == "assignment":
            key, value = src[arg.info["left"].start:arg.info["left"].end], _java_text(arg.info["right"], src, False)
        elif arg.kind in ("identifier", "class_literal"):
            key, value = UNNAMED, src[arg.start:arg.end]
        else:
            continue
        if key in args:
            raise CallParseError(f"argument {key!r} given twice")
        args[key] = value
    return [{name: args}]


# -- JavaScript --------------------------------------------------------------------------------

_JS_ASSIGN = {"=", "+=", "-=", "*=", "/=", "%=", "**=", "<<=", ">>=", ">>>=", "&=", "|=", "^=", "&&=", "||=", "??="}
_JS_BINARY = [["??"], ["||"], ["&&"], ["|"], ["^"], ["&"], ["==", "!=", "===", "!=="],
              ["<", ">", "<=", ">=", "instanceof", "in"], ["<<", ">>", ">>>"], ["+", "-"], ["*", "/", "%"], ["**"]]
_JS_STATEMENT_KEYWORDS = {"if", "for", "while", "do", "return", "throw", "try", "switch",
                          "break", "continue", "import", "export", "debugger", "with"}
_JS_CONTINUING = frozenset({".", "?.", "[", "(", "++", "--", *(op for level in _JS_BINARY for op in level)})
_JS_UNARY = {"!", "~", "+", "-", "typeof", "void", "delete", "await", "++", "--"}
_JS_RESERVED = {"function", "class", "new", "return", "var", "let", "const", "if", "else", "for", "while", "do",
                "typeof", "void", "delete", "instanceof", "in", "throw", "try", "catch", "switch", "case",
                "break", "continue", "default", "import", "export", "yield", "debugger", "with", "extends"}


class _JavaScript(_Parser):
    def program(self) -> list[Node]:
        statements = []
        while self.peek().kind != "eof":
            if self.at(";"):
                self.take()
                continue
            if self.at("var", "let", "const"):
                statements.append(self.declaration())
            elif self.at("{") or self.peek().kind == "name" and self.peek().text in _JS_STATEMENT_KEYWORDS:
                raise self.fail()  # a block or another statement: unsupported here
            else:
                statements.append(self.sequence())
            if self.at(";"):
                self.take()
            elif self.peek().kind != "eof" and not self.peek().newline and self.absorbed(_JS_CONTINUING):
                raise CallParseError(f"{self.peek().text!r} after a statement on its line (an ERROR in tree-sitter)")
        return statements

    def declaration(self) -> Node:
        parts: list = [self.take()]
        while True:
            name = self.take()
            if name.kind != "name":
                raise CallParseError(f"expected a name at {name.start}")
            parts.append(name)
            if self.at("="):
                parts += [self.take(), self.assignment()]
            if not self.at(","):
                return _node("declaration", parts)
            parts.append(self.take())

    def sequence(self) -> Node:
        first = self.assignment()
        if not self.at(","):
            return first
        parts: list = [first]
        while self.at(","):
            parts += [self.take(), self.assignment()]
        return _node("sequence", parts)

    def assignment(self) -> Node:
        arrow = self.arrow()
        if arrow is not None:
            return arrow
        left = self.conditional()
        t = self.peek()
        if t.kind == "op" and t.text in _JS_ASSIGN:
            op = self.take()
            right = self.assignment()
            return _node("assignment" if op.text == "=" else "augmented_assignment", [left, op, right],
                         left=left, right=right)
        return left

    def arrow(self) -> Node | None:
        start = self.i
        if self.at("async") and self.peek(1).kind == "name" and not self.peek(1).newline:
            self.i += 1
        t = self.peek()
        if t.kind == "name" and t.text not in _JS_RESERVED and self.peek(1).text == "=>":
            params = [self.take()]
        elif self.at("("):
            close = self.closing_paren()
            if close < 0 or self.toks[close + 1].text != "=>" or self.toks[close + 1].newline:
                self.i = start
                return None
            params = self.balanced()
        else:
            self.i = start
            return None
        arrow = self.take()
        body = self.balanced() if self.at("{") else [self.assignment()]
        return _node("arrow_function", [*self.toks[start:self.i - len(params) - 1], *params, arrow, *body])

    def conditional(self) -> Node:
        cond = self.binary(0)
        if not self.at("?"):
            return cond
        q = self.take()
        yes = self.assignment()
        colon = self.expect(":")
        return _node("ternary", [cond, q, yes, colon, self.assignment()])

    def binary(self, level: int) -> Node:
        if level == len(_JS_BINARY):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek().kind in ("op", "name") and self.peek().text in _JS_BINARY[level]:
            op = self.take()
            right = self.bound_assignment(self.binary(level if op.text == "**" else level + 1))
            left = _node("binary", [left, op, right])
        return left

    def bound_assignment(self, operand: Node) -> Node:
        """tree-sitter binds an assignment after an operator's operand to it: `!a = 1` is `!(a = 1)`,
        `a - b = 1` is `a - (b = 1)`."""
        if not (self.peek().kind == "op" and self.peek().text in _JS_ASSIGN):
            return operand
        op = self.take()
        right = self.assignment()
        kind = "assignment" if op.text == "=" else "augmented_assignment"
        return _node(kind, [operand, op, right], left=operand, right=right)

    def unary(self) -> Node:
        t = self.peek()
        if t.kind in ("op", "name") and t.text in _JS_UNARY:
            op = self.take()
            return _node("unary", [op, self.bound_assignment(self.unary())])
        node = self.call_chain(self.primary())
        if self.at("++", "--") and not self.peek().newline:
            node = _node("update", [node, self.take()])
        return node

    def arguments(self) -> tuple[list, list[Node]]:
        parts: list = [self.expect("(")]
        args = []
        while not self.at(")"):
            if self.at(","):  # tree-sitter takes an empty argument
                parts.append(self.take())
                continue
            if self.at("..."):
                spread = self.take()
                arg = _node("spread", [spread, self.assignment()])
            else:
                arg = self.assignment()
            args.append(arg)
            parts.append(arg)
            if not self.at(")"):
                parts.append(self.expect(","))
        parts.append(self.take())
        return parts, args

    def call_chain(self, node: Node, calls: bool = True) -> Node:
        while True:
            t = self.peek()
            if self.at("."):
                dot = self.take()
                name = self.take()
                if name.kind != "name" and name.text != "#":
                    raise CallParseError(f"expected a property at {name.start}")
                if name.text == "#":
                    name = self.take()
                node = _node("member", [node, dot, name])
            elif self.at("?."):
                chain = self.take()
                if self.at("("):
                    parts, args = self.arguments()
                    node = _node("call", [node, chain, *parts], callee=node, args=args)
                elif self.at("["):
                    open_ = self.take()
                    node = _node("subscript", [node, chain, open_, self.sequence(), self.expect("]")])
                else:
                    node = _node("member", [node, chain, self.take()])
            elif self.at("["):
                open_ = self.take()
                node = _node("subscript", [node, open_, self.sequence(), self.expect("]")])
            elif t.kind == "template":
                node = _node("call", [node, self.take()], callee=node, args=[])
            elif calls and self.at("("):
                parts, args = self.arguments()
                node = _node("call", [node, *parts], callee=node, args=args)
            else:
                return node

    def primary(self) -> Node:
        t = self.peek()
        if t.kind in ("number", "string", "template", "regex"):
            return _node(t.kind, [self.take()])
        if self.at("("):
            open_ = self.take()
            inner = self.sequence()
            return _node("parenthesized", [open_, inner, self.expect(")")])
        if self.at("["):
            return self.array()
        if self.at("{"):
            return self.object()
        if t.kind != "name":
            raise self.fail()
        if t.text == "new":
            new = self.take()
            if self.at("."):  # new.target
                return _node("meta", [new, self.take(), self.take()])
            callee = self.call_chain(self.primary(), calls=False)
            parts, args = self.arguments() if self.at("(") else ([], [])
            return _node("new", [new, callee, *parts])
        if t.text in ("function", "async") and (t.text == "function" or self.peek(1).text == "function"):
            return self.function()
        if t.text == "class":
            cls = [self.take()]
            while not self.at("{"):
                cls.append(self.take())
            return _node("class", [*cls, *self.balanced()])
        if t.text in _JS_RESERVED:
            raise self.fail()
        kind = t.text if t.text in ("true", "false", "null", "undefined", "this", "super") else "identifier"
        return _node(kind, [self.take()])

    def function(self) -> Node:
        parts: list = []
        while not self.at("("):
            parts.append(self.take())
        parts += self.balanced()
        if not self.at("{"):
            raise self.fail()
        return _node("function", [*parts, *self.balanced()])

    def array(self) -> Node:
        parts: list = [self.take()]
        while not self.at("]"):
            if self.at(","):
                parts.append(self.take())
                continue
            if self.at("..."):
                parts.append(self.take())
            parts.append(self.assignment())
            if self.at(")"):  # tree-sitter inserts a MISSING "]" before the call's ")"
                return _node("array", parts)
            if not self.at("]"):
                parts.append(self.expect(","))
        parts.append(self.take())
        return _node("array", parts)

    def object(self) -> Node:
        parts: list = [self.take()]
        while not self.at("}"):
            if self.at("..."):
                parts += [self.take(), self.assignment()]
            else:
                parts += self.property()
            if self.at(")"):  # a MISSING "}", likewise
                return _node("object", parts)
            if not self.at("}"):
                parts.append(self.expect(","))
        parts.append(self.take())
        return _node("object", parts)

    def property(self) -> list:
        parts: list = []
        while self.peek().text in ("get", "set", "async", "*") and self.peek(1).text not in (":", ",", "}", "("):
            parts.append(self.take())
        if self.at("["):
            open_ = self.take()
            parts += [open_, self.assignment(), self.expect("]")]
        elif self.peek().kind in ("name", "string", "number"):
            parts.append(self.take())
        else:
            raise self.fail()
        if self.at(":"):
            return [*parts, self.take(), self.assignment()]
        if self.at("("):  # a method
            parts += self.balanced()
            if not self.at("{"):
                raise self.fail()
            return [*parts, *self.balanced()]
        if self.at("=") and parts[-1].kind == "name":  # shorthand with a default (a pattern)
            return [*parts, self.take(), self.assignment()]
        if len(parts) == 1 and parts[0].kind == "name":  # shorthand
            return parts
        raise self.fail()


def parse_javascript(src: str) -> list[dict[str, dict]]:
    """The first JavaScript call statement in `src`, as BFCL's tree-sitter decoder reads it."""
    try:
        statements = _JavaScript(src, js=True).program()
    except RecursionError:
        raise CallParseError("nested too deeply") from None
    call = next((s for s in statements if s.kind == "call"), None)
    if call is None:
        raise CallParseError("no call statement", wrong_format=True)
    callee = call.info["callee"]
    args: dict[str, Any] = {}
    for arg in call.info["args"]:
        if arg.kind == "assignment":
            left, right = arg.info["left"], arg.info["right"]
            key, value = src[left.start:left.end], src[right.start:right.end]
            if len(value) > 1 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
        elif arg.kind in ("identifier", "true"):
            key, value = UNNAMED, src[arg.start:arg.end]
        else:
            continue
        if key in args:
            raise CallParseError(f"argument {key!r} given twice")
        args[key] = value
    return [{src[callee.start:callee.end]: args}]


# -- values by declared type (BFCL's type converters) ------------------------------------------

_INT = re.compile(r"^-?\d+$")
_JAVA_FLOAT = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?[fF]$")
_JAVA_DOUBLE = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$")
_JAVA_LONG = re.compile(r"^-?\d+[lL]$")


def java_value(text: str, kind: str, item_kind: str | None = None) -> Any:
    """A Java value's text as BFCL converts it for its declared type; text that does not fit stays text."""
    if kind in ("byte", "short", "integer"):
        return int(text) if _INT.match(text) else text
    if kind == "float":
        return float(re.sub(r"[fF]$", "", text)) if _JAVA_FLOAT.match(text) else text
    if kind == "double":
        return float(text) if _JAVA_DOUBLE.match(text) else text
    if kind == "long":
        return int(re.sub(r"[lL]$", "", text)) if _JAVA_LONG.match(text) else text
    if kind == "boolean":
        return text == "true" if text in ("true", "false") else text
    if kind in ("char", "String", "any"):  # BFCL's char pattern (^'.$') can never match
        return text
    if kind == "ArrayList":
        return _java_arraylist(text, item_kind)
    if kind == "Array":
        return _java_array(text, item_kind)
    if kind == "HashMap":
        return _java_hashmap(text)
    raise ValueError(f"unsupported Java type {kind!r}")


def _java_item(text: str, item_kind: str | None) -> Any:
    if item_kind in ("char", "String"):
        return text[1:-1]
    return java_value(text, item_kind) if item_kind else _java_literal(text)


def _java_arraylist(text: str, item_kind: str | None) -> Any:
    m = re.search(r"new\s+ArrayList<\w*>\(Arrays\.asList\((.+?)\)\)", text)
    if m:
        return [_java_item(e.strip(), item_kind) for e in m.group(1).split(",")]
    m = re.search(r"new\s+ArrayList<\w*>\(\)\s*\{\{\s*(.+?)\s*\}\}", text, re.DOTALL)
    if m:
        return [_java_item(e.strip(), item_kind) for e in re.findall(r"add\((.+?)\)", m.group(1))]
    return [] if re.search(r"new\s+ArrayList<\w*>\(\)", text) else text


def _java_array(text: str, item_kind: str | None) -> Any:
    m = re.search(r"new\s+\w+\[\]\s*\{(.*?)\}", text)
    if not m:
        return text
    items = [e.strip() for e in m.group(1).split(",") if e.strip()]
    return [java_value(e, item_kind) if item_kind else _java_literal(e) for e in items]


def _java_hashmap(text: str) -> Any:
    m = re.search(r"new\s+HashMap<.*?>\s*\(\)\s*\{\s*\{?\s*(.*?)\s*\}?\s*\}", text, re.DOTALL)
    if m:
        return {k: _java_literal(v.strip()) for k, v in re.findall(r"put\(\"(.*?)\",\s*(.*?)\)", m.group(1))}
    return {} if re.search(r"new\s+HashMap<.*?>\s*\(\)", text) else text


def _java_literal(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    if _JAVA_LONG.match(text):
        return int(text[:-1])
    if _JAVA_FLOAT.match(text):
        return float(re.sub(r"[fF]$", "", text))
    return _number_or_text(text)


def _number_or_text(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def js_value(text: str, kind: str, item_kind: str | None = None) -> Any:
    """A JavaScript value's text as BFCL converts it for its declared type; text that does not fit stays text."""
    if kind == "String":
        quoted = len(text) > 0 and text[0] == text[-1] and text[0] in "\"'"
        return text[1:-1] if quoted else text
    if kind == "integer":
        return int(text) if _INT.match(text) else text
    if kind == "float":
        return float(text) if re.match(r"^-?\d+(\.\d+)?$", text) else text
    if kind == "Bigint":
        return int(text[:-1]) if re.match(r"^-?\d+n$", text) else text
    if kind == "Boolean":
        return text == "true" if text in ("true", "false") else text
    if kind == "dict":
        return _js_object(text.strip())
    if kind == "array":
        return _js_array(text.strip(), item_kind)
    if kind == "any":
        return text
    raise ValueError(f"unsupported JavaScript type {kind!r}")


_JS_2D = re.compile(r"\[\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\]|\bnew\s+Array\(\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\)")
_JS_1D = re.compile(r"\[(.*?)\]|\bnew\s+Array\((.*?)\)")


def _js_array(code: str, item_kind: str | None) -> Any:
    try:
        m = _JS_2D.match(code)
        if m:
            rows = []
            for k, row in enumerate(re.findall(r"\[(.*?)\]", m.group(0))):
                row = row.strip()
                if k == 0 and row.startswith("["):
                    row = row[1:]
                rows.append([_js_literal(e.strip()) for e in row.split(",")])
            return rows
        m = _JS_1D.match(code)
        if not m:
            return code
        inner = (m.group(1) if m.group(1) is not None else m.group(2)).strip()
        items = [e.strip() for e in inner.split(",")] if inner else []
        if item_kind:
            return [js_value(e, item_kind, "String" if e[:1] in ("'", '"') else None) for e in items]
        return [_js_literal(e) for e in items]
    except Exception:  # BFCL keeps the text when its conversion fails anywhere
        return code


def _js_object(code: str) -> Any:
    if code == "{}":
        return {}
    m = re.match(r"\{(.*?)\}", code)
    if not m:
        return code
    try:
        out = {}
        for key, value in re.findall(r"([^:]+):\s*(.*?)(?:,\s*(?=[^,]+:)|$)", m.group(1)):
            key, value = key.strip().strip("'\""), value.strip()
            if value.startswith("[") and value.endswith("]"):
                out[key] = _js_array(value, None)
            elif value.startswith("{") and value.endswith("}"):
                out[key] = _js_object(value)
            else:
                out[key] = _js_literal(value.strip("'\""))
        return out
    except Exception:  # as in BFCL
        return code


def _js_literal(text: str) -> Any:
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    if len(text) > 0 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return _number_or_text(text)
