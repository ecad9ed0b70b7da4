"""BFCL decoding and checking (tasks.function_calls): every dataset entry's own answer passes, each rule
fails with its reason, the parsers (and their refusal to run model text), irrelevance and relevance.
Agreement with BFCL's own checker on the same outputs is bench/bench_bfcl_agreement.py's job."""

import gzip
import json
import time
from pathlib import Path

import pytest

from evalmap.tasks.function_calls import (
    REASONS,
    UNNAMED,
    CallParseError,
    answer_calls,
    check_entry,
    decode_prompt_output,
    decode_text_tool_calls,
    decode_tool_calls,
    format_calls,
    openai_tools,
)

BFCL = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "bfcl"
AST_CATEGORIES = ["simple_python", "simple_java", "simple_javascript", "multiple", "parallel", "parallel_multiple",
                  "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple"]

# Entries no answer written the natural way can pass, in BFCL as here (the bench shows BFCL's verdicts agree):
# their error_type. Java: a HashMap's `{{ put(..); }}` body is dropped by BFCL's parser (the map reads {});
# Array<String> items keep their quotes, and ArrayList<any> items stay text, so neither equals the answer.
# live: the answer allows no value for a required parameter, or names one the function lacks.
UNSATISFIABLE = {
    "simple_java_1": "value_error:dict_key", "simple_java_67": "value_error:dict_key",
    "simple_java_68": "value_error:dict_key", "simple_java_36": "value_error:list/tuple",
    "simple_java_65": "value_error:list/tuple", **{f"simple_java_{n}": "value_error:list/tuple"
                                                    for n in (35, 78, 83, 85, 86, 89, 90, 91)},
    "live_simple_106-63-0": "simple_function_checker:missing_required",
    "live_simple_112-68-0": "simple_function_checker:missing_required",
    "live_multiple_507-149-4": "simple_function_checker:missing_required",
    "live_multiple_964-207-0": "simple_function_checker:missing_required",
    "live_multiple_862-181-3": "simple_function_checker:unexpected_param",
}


def _load(path: Path) -> list[dict]:
    if not path.exists():
        path = path.with_name(path.name + ".gz")
    with gzip.open(path, "rt") if path.suffix == ".gz" else open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _language(category: str) -> str:
    return "java" if category.endswith("_java") else "javascript" if category.endswith("_javascript") else "python"


# -- (1) every entry's own answer ------------------------------------------------------------------------------


@pytest.mark.parametrize("category", AST_CATEGORIES)
def test_every_possible_answer_passes(category):
    if not BFCL.is_dir():
        pytest.skip(f"BFCL data not found at {BFCL}")
    prompts = _load(BFCL / f"BFCL_v4_{category}.json")
    answers = _load(BFCL / "possible_answer" / f"BFCL_v4_{category}.json")
    language = _language(category)
    passed = 0
    for prompt, answer in zip(prompts, answers, strict=True):
        functions, truth = prompt["function"], answer["ground_truth"]
        text = format_calls(answer_calls(truth, functions), functions, language)
        # native values: the decoded ones (Java / JavaScript values are source text there too)
        calls = answer_calls(truth, functions) if prompt["id"] in UNSATISFIABLE else decode_prompt_output(text,
                                                                                                           language)
        native = [{"name": name.replace(".", "_"), "arguments": json.dumps(args)}
                  for call in calls for name, args in call.items()]
        prompt_verdict = check_entry(category, functions, truth, text, language=language, underscore_to_dot=False)
        native_verdict = check_entry(category, functions, truth, native, language=language, underscore_to_dot=True)
        if prompt["id"] in UNSATISFIABLE:
            assert not prompt_verdict.valid and prompt_verdict.error_type == UNSATISFIABLE[prompt["id"]], prompt["id"]
            assert not native_verdict.valid, prompt["id"]
            continue
        assert prompt_verdict.valid, (prompt["id"], text, prompt_verdict)
        assert native_verdict.valid, (prompt["id"], native, native_verdict)
        passed += 1
    assert passed == len(prompts) - sum(p["id"] in UNSATISFIABLE for p in prompts)


# -- (2) each rule, with its reason ---------------------------------------------------------------------------

AREA = {"name": "geometry.area", "description": "", "parameters": {"type": "dict", "required": ["base", "height"],
        "properties": {"base": {"type": "integer"}, "height": {"type": "float"}, "unit": {"type": "string"},
                       "tags": {"type": "array", "items": {"type": "string"}},
                       "options": {"type": "dict", "properties": {}},
                       "points": {"type": "array", "items": {"type": "dict"}}}}}
AREA_ANSWER = [{"geometry.area": {"base": [10], "height": [5.0], "unit": ["square meters", ""], "tags": [["a b"], ""],
                                  "options": [{"precise": [True], "digits": [2, ""]}, ""],
                                  "points": [[{"x": [1]}, {"x": [2]}], ""]}}]
HYPOT = {"name": "hypot", "description": "", "parameters": {"type": "dict", "required": ["x"],
         "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}}}}


def _simple(output, **kw):
    return check_entry("simple_python", [AREA], AREA_ANSWER, output, language="python",
                       underscore_to_dot=kw.get("underscore_to_dot", False))


@pytest.mark.parametrize("output, reason, error_type", [
    ("geometry.area(base=10, height=5.0)", "", ""),
    ("geometry.area(base=10, height=5)", "", ""),  # an int for a float
    ("geometry.area(base=10, height=5.0, unit='Square-Meters ')", "", ""),  # BFCL's string normalisation
    ("geometry.area(base=10, height=5.0, unit='square meters!')", "value", "value_error:string"),
    ("geometry.area(base=10, height=5.0, tags=['A_B'])", "", ""),
    ("geometry.area(base=10, height=5.0, tags=['a', 'b'])", "value", "value_error:list/tuple"),
    ("geometry.area(base=10, height=5.0, tags=[1])", "value", "value_error:list/tuple"),  # "" spares the item check
    ("geometry.area(base=10, height=5.0, tags=[])", "", ""),  # an empty list matches the allowed "" (BFCL)
    ("geometry.area(base=10, height=5.0, options={'precise': True})", "", ""),
    ("geometry.area(base=10, height=5.0, options={'precise': False})", "value", "value_error:dict_value"),
    ("geometry.area(base=10, height=5.0, options={'digits': 2})", "value", "value_error:dict_key"),
    ("geometry.area(base=10, height=5.0, points=[{'x': 1}, {'x': 2}])", "", ""),
    ("geometry.area(base=10, height=5.0, points=[{'x': 1}])", "value", "value_error:list_dict_count"),
    ("geometry.area(base=10, height=5.0) and more", "unparsable", "ast_decoder:decoder_failed"),
    ("[geometry.area(base=10, height=5.0), geometry.area(base=10, height=5.0)]", "wrong_count",
     "simple_function_checker:wrong_count"),
    ("area(base=10, height=5.0)", "wrong_name", "simple_function_checker:wrong_func_name"),
    ("geometry.area(height=5.0)", "missing_param", "simple_function_checker:missing_required"),
    ("geometry.area(base=10, height=5.0, depth=1)", "unexpected_param", "simple_function_checker:unexpected_param"),
    ("geometry.area(base='10', height=5.0)", "type", "type_error:simple"),
    ("geometry.area(base=True, height=5.0)", "type", "type_error:simple"),
    ("geometry.area(base=11, height=5.0)", "value", "value_error:others"),
])
def test_each_rule_has_its_reason(output, reason, error_type):
    verdict = _simple(output)
    assert (verdict.valid, verdict.reason, verdict.error_type) == (not reason, reason, error_type), verdict
    assert verdict.reason in ("", *REASONS)
    if reason:
        assert verdict.message


def test_item_types_are_checked_one_level_down():
    answer = [{"geometry.area": {"base": [10], "height": [5.0], "tags": [["a"]]}}]
    verdict = check_entry("simple_python", [AREA], answer, "geometry.area(base=10, height=5.0, tags=[1])",
                          language="python", underscore_to_dot=False)
    assert (verdict.reason, verdict.error_type) == ("type", "type_error:nested")


def test_optional_parameter_the_answer_needs():
    answer = [{"hypot": {"x": [3], "y": [4]}}]
    verdict = check_entry("simple_python", [HYPOT], answer, "hypot(x=3)", language="python", underscore_to_dot=False)
    assert (verdict.reason, verdict.error_type) == ("missing_param", "simple_function_checker:missing_optional")


def test_a_variable_answer_is_compared_as_written():
    answer = [{"hypot": {"x": ["side"]}}]  # BFCL writes a variable as its name where the type says integer
    ok = check_entry("simple_python", [HYPOT], answer, "hypot(x=side)", language="python", underscore_to_dot=False)
    other = check_entry("simple_python", [HYPOT], answer, "hypot(x='SIDE')", language="python", underscore_to_dot=False)
    assert ok.valid and (other.reason, other.error_type) == ("value", "value_error:others")


def test_native_names_with_dots():
    call = [{"name": "geometry_area", "arguments": '{"base": 10, "height": 5.0}'}]
    assert _simple(call, underscore_to_dot=True).valid
    dotted = _simple([{"name": "geometry.area", "arguments": {"base": 10, "height": 5.0}}], underscore_to_dot=True)
    assert dotted.reason == "wrong_name"
    assert _simple([{"name": "geometry.area", "arguments": "{oops"}]).reason == "unparsable"
    wrong_format = _simple([{"name": "geometry.area", "arguments": "[1]"}])
    assert wrong_format.error_type == "ast_decoder:decoder_wrong_output_format"


def test_parallel_in_any_order_and_multiple_among_candidates():
    answer = [{"hypot": {"x": [3]}}, {"hypot": {"x": [4]}}]
    check = lambda out: check_entry("parallel", [HYPOT], answer, out, language="python", underscore_to_dot=False)  # noqa: E731
    assert check("[hypot(x=4), hypot(x=3)]").valid
    assert check("[hypot(x=3)]").error_type == "parallel_function_checker_no_order:wrong_count"
    no_match = check("[hypot(x=3), hypot(x=5)]")
    assert no_match.reason == "no_match"
    assert no_match.error_type == "parallel_function_checker_no_order:cannot_find_match"
    functions, answer = [AREA, HYPOT], [{"hypot": {"x": [3]}}]
    multiple = lambda out: check_entry("multiple", functions, answer, out, language="python", underscore_to_dot=False)  # noqa: E731
    assert multiple("hypot(x=3)").valid
    assert multiple("geometry.area(base=10, height=5.0)").reason == "wrong_name"
    assert multiple("[hypot(x=3), hypot(x=3)]").error_type == "multiple_function_checker:wrong_count"


JAVA = {"name": "Cache.put", "description": "", "parameters": {"type": "dict", "required": ["key", "ttl"],
                                                               "properties": {
    "key": {"type": "String"}, "ttl": {"type": "long"}, "ids": {"type": "ArrayList", "items": {"type": "integer"}},
    "ratio": {"type": "float"}, "names": {"type": "Array", "items": {"type": "String"}}}}}
JAVA_ANSWER = [{"Cache.put": {"key": ["user:1"], "ttl": [60], "ids": [[1, 2], ""], "ratio": [0.5, ""],
                              "names": ["nameList", ""]}}]


@pytest.mark.parametrize("output, reason, error_type", [
    ('Cache.put(key="user:1", ttl=60L)', "", ""),
    ('Cache.put(key="User:1", ttl=60L, ids=new ArrayList<>(Arrays.asList(1, 2)), ratio=0.5f)', "", ""),
    ('Cache.put(key="user:1", ttl=60L, names=nameList)', "", ""),  # a variable: the answer names it
    ('Cache.put(key="user:1", ttl=60)', "type", "type_error:simple"),  # a long needs its L
    ('Cache.put(key="user:1", ttl=60L, ratio=0.5)', "type", "type_error:simple"),  # a float needs its f
    ('Cache.put(key="user:1", ttl=61L)', "value", "value_error:others"),
    ('Cache.put(key="user:1", ttl=60L, ids=new ArrayList<>(Arrays.asList(2, 1)))', "value", "value_error:list/tuple"),
    ('Cache.put(key="user:1", ttl=60L, ids=new ArrayList<>())', "", ""),  # [] matches the allowed "" (BFCL)
    ('Cache.put(key="user:1", ttl=60L, ids=new ArrayList<>(Arrays.asList(1)))', "value", "value_error:list/tuple"),
    ('Cache.put(key="user:1", ttl=60L', "unparsable", "ast_decoder:decoder_failed"),
    ("I cannot do that.", "unparsable", "ast_decoder:decoder_failed"),
    ("Hello world", "unparsable", "ast_decoder:decoder_wrong_output_format"),  # Java (a declaration) without a call
])
def test_java_rules(output, reason, error_type):
    verdict = check_entry("simple_java", [JAVA], JAVA_ANSWER, output, language="java", underscore_to_dot=False)
    assert (verdict.valid, verdict.reason, verdict.error_type) == (not reason, reason, error_type), verdict


def test_java_and_javascript_native_values_are_source_text():
    ok = [{"name": "Cache_put", "arguments": {"key": "user:1", "ttl": "60L"}}]
    assert check_entry("simple_java", [JAVA], JAVA_ANSWER, ok, language="java", underscore_to_dot=True).valid
    typed = [{"name": "Cache_put", "arguments": {"key": "user:1", "ttl": 60}}]
    verdict = check_entry("simple_java", [JAVA], JAVA_ANSWER, typed, language="java", underscore_to_dot=True)
    assert verdict.error_type == "type_error:java"


JS = {"name": "plot", "description": "", "parameters": {"type": "dict", "required": ["points"], "properties": {
    "points": {"type": "array", "items": {"type": "float"}}, "title": {"type": "String"},
    "style": {"type": "dict"}, "big": {"type": "Bigint"}}}}
JS_ANSWER = [{"plot": {"points": [[1.0, 2.5]], "title": ["Sales", ""], "style": [{"color": ["red"]}, ""],
                       "big": [10, ""]}}]


@pytest.mark.parametrize("output, reason, error_type", [
    ("plot(points=[1, 2.5])", "", ""),
    ("plot(points=[1.0, 2.5], title='sales', style={color: 'red'}, big=10n)", "", ""),
    ("plot(points=[1.0, 2.5], big=10)", "type", "type_error:simple"),
    ("plot(points=[1.0, 3])", "value", "value_error:list/tuple"),
    ("plot(points=[1.0, 2.5], style={color: 'blue'})", "value", "value_error:dict_value"),
    ("plot(points=[1.0, 2.5]), plot(points=[1.0, 2.5])", "unparsable", "ast_decoder:decoder_wrong_output_format"),
    ("plot(points=[1.0, 2.5]", "unparsable", "ast_decoder:decoder_failed"),
])
def test_javascript_rules(output, reason, error_type):
    verdict = check_entry("simple_javascript", [JS], JS_ANSWER, output, language="javascript", underscore_to_dot=False)
    assert (verdict.valid, verdict.reason, verdict.error_type) == (not reason, reason, error_type), verdict


# -- (3) parsers ----------------------------------------------------------------------------------------------


def test_python_values_as_bfcl_reads_them():
    calls = decode_prompt_output(
        "```\n[f(a=1, b=-2.5, c=+3, d='x', e=[1, (2, 3)], g={'k': None}, h=2*3+1, i=name, j=g(1), k=g(x=1), "
        "l=y[0], m=..., **rest), mod.sub.h()]\n```", "python")
    assert calls == [{"f": {"a": 1, "b": -2.5, "c": -3, "d": "x", "e": [1, (2, 3)], "g": {"k": None}, "h": 7,
                            "i": "name", "j": "g(1)", "k": {"g": {"x": 1}}, "l": "y[0]", "m": "...",
                            UNNAMED: "rest"}},
                     {"mod.sub.h": {}}]
    assert decode_prompt_output("[]", "python") == []
    for text in ["Sorry, I can't.", "f(x=", "f(x=a*2)", "f(x=lambda: 1)", "f(x=1/0)", "f(x=-'a')", "f(x=x.y)",
                 "{'name': 'f'}", "f(x={[1]: 2})"]:
        with pytest.raises(CallParseError):
            decode_prompt_output(text, "python")


def test_model_text_is_never_run(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("model text reached eval/exec")

    monkeypatch.setattr("builtins.eval", refuse)
    monkeypatch.setattr("builtins.exec", refuse)
    marker = tmp_path / "pwned"
    attacks = {
        f"f(x=__import__('os').system('touch {marker}'))": f"__import__('os').system('touch {marker}')",
        f"f(x=__import__('os').system('touch {marker}') + 1)": f"__import__('os').system('touch {marker}') + 1",
        "f(x=(lambda: open('/etc/passwd').read())())": "(lambda: open('/etc/passwd').read())()",
        "f(x=(lambda: open('/etc/passwd').read())() + '')": "(lambda: open('/etc/passwd').read())() + ''",
        "f(x=9**9**9)": "9 ** 9 ** 9",
        "f(x=10**10**10 * 2)": "10 ** 10 ** 10 * 2",
        "f(x='a' * 10**12)": "'a' * 10 ** 12",
        "f(x='%0999999999d' % 1)": "'%0999999999d' % 1",
        "f(x=1 << 10**9)": "1 << 10 ** 9",
    }
    started = time.perf_counter()
    for text, kept in attacks.items():
        assert decode_prompt_output(text, "python") == [{"f": {"x": kept}}]
        assert check_entry("irrelevance", [], None, text, language="python", underscore_to_dot=False).reason
    assert time.perf_counter() - started < 2
    assert not marker.exists()
    assert decode_prompt_output("f(x=2**10 - 24, y='ab' * 2)", "python") == [{"f": {"x": 1000, "y": "abab"}}]


def test_java_values_as_bfcl_reads_them():
    text = ('Svc.run(a="x y", b=new int[] {1, 2}, c=new ArrayList<>(Arrays.asList("p", "q")), '
            'd=new HashMap<String, Integer>() {{ put("k", 1); }}, e=Foo.bar( 1 ), f=-3L, g=String.class, h=x -> x + 1, '
            "i=(int) 2.5, j='c', k=obj.field)")
    assert decode_prompt_output(text, "java") == [{"Svc.run": {
        "a": "x y", "b": "new int[]{1,2}", "c": 'new ArrayList<>(Arrays.asList("p", "q"))',
        "d": "new HashMap<String,Integer>()", "e": "Foo.bar( 1 )", "f": "-3L", "g": "String.class", "h": "x->x+1",
        "i": "(int)2.5", "j": "c", "k": "obj.field"}}]
    positional = decode_prompt_output("Svc.run(a=1, ref, b=2);", "java")
    assert positional == [{"Svc.run": {"a": "1", UNNAMED: "ref", "b": "2"}}]
    assert decode_prompt_output("[x = Svc.run(a=1, b=2)]", "java") == [{"Svc.run": {"a": "1", "b": "2"}}]
    # tree-sitter's recovery, as measured: short statements without ";" and short names before "." are ERRORs
    refused = ["A.b(c=1)", "Abc.run(a=1, b=2)\nDef.run(c=3)", "A.b(c=1), D.e(f=2)", "A.b(a=1, a=2)",
               "A.b(c=new int[5])"]
    for text in refused:
        with pytest.raises(CallParseError):
            decode_prompt_output(text, "java")
    assert decode_prompt_output("A.b(c=1);", "java") == [{"A.b": {"c": "1"}}]
    assert decode_prompt_output("Abc.run(a=1, b=2)\nDefghijklm.run(c=3)", "java") == [{"Abc.run": {"a": "1", "b": "2"}}]
    assert decode_prompt_output("Svc.run(a=1, b=2,)", "java") == [{"Svc.run": {"a": "1", "b": "2", UNNAMED: ""}}]


def test_javascript_values_as_bfcl_reads_them():
    text = "obj.run(a='x', b=[1, 2], c={k: \"v\"}, d=x => x + 1, e=`t${x}`, f=/re/g, g=true, flag, 3)"
    assert decode_prompt_output(text, "javascript") == [{"obj.run": {
        "a": "x", "b": "[1, 2]", "c": '{k: "v"}', "d": "x => x + 1", "e": "`t${x}`", "f": "/re/g", "g": "true",
        UNNAMED: "flag"}}]
    with pytest.raises(CallParseError):  # two unnamed arguments (`true` counts as one)
        decode_prompt_output("run(flag, true)", "javascript")
    assert decode_prompt_output("run(a=1)\nrun(a=2)", "javascript") == [{"run": {"a": "1"}}]
    assert decode_prompt_output("run(,a=1)", "javascript") == [{"run": {"a": "1"}}]
    for text in ["run(a=1) run(a=2)", "run(a=", "hello world"]:
        with pytest.raises(CallParseError):
            decode_prompt_output(text, "javascript")
    with pytest.raises(CallParseError) as no_call:
        decode_prompt_output("run(a=1), run(a=2)", "javascript")
    assert no_call.value.wrong_format


def test_native_and_text_tool_calls():
    assert decode_tool_calls([{"name": "f", "arguments": '{"a": 1}'},
                              {"type": "function", "function": {"name": "g", "arguments": {}}}]) == [{"f": {"a": 1}},
                                                                                                      {"g": {}}]
    for bad in ([{"name": "f", "arguments": "{"}], [{"arguments": "{}"}], ["f"]):
        with pytest.raises(CallParseError):
            decode_tool_calls(bad)
    text = ('<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>\n<tool_call>{broken}</tool_call>'
            '<tool_call>{"name": "g", "parameters": {"b": 2}}')
    assert decode_text_tool_calls(text) == [{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": {"b": 2}}]
    assert decode_text_tool_calls('```json\n[{"name": "f", "arguments": {}}]\n```') == [{"name": "f", "arguments": {}}]
    listed = '<tool_call>[{"name": "f", "arguments": {}}, {"name": "g", "arguments": {"x": 1}}]</tool_call>'
    assert decode_text_tool_calls(listed) == [{"name": "f", "arguments": {}}, {"name": "g", "arguments": {"x": 1}}]
    for text in ["No tool fits.", "<tool_call>{broken}</tool_call>", '{"answer": 1}', "[]"]:
        with pytest.raises(CallParseError):
            decode_text_tool_calls(text)


def test_openai_tools():
    docs = [{"name": "geo.area", "description": "Area.", "parameters": {"type": "dict", "required": ["w"],
                                                                         "properties": {
        "w": {"type": "float", "description": "Width."}, "tags": {"type": "tuple", "items": {"type": "any"}},
        "opts": {"type": "dict", "properties": {"deep": {"type": "float", "description": "D."}}}}}}]
    (tool,) = openai_tools(docs)
    assert tool["type"] == "function" and tool["function"]["name"] == "geo_area"
    params = tool["function"]["parameters"]
    assert params["type"] == "object" and params["required"] == ["w"]
    assert params["properties"]["w"] == {"type": "number", "format": "float",
                                         "description": "Width. This is a float type value."}
    assert params["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    assert params["properties"]["opts"]["type"] == "object"
    assert params["properties"]["opts"]["properties"]["deep"]["type"] == "number"
    assert docs[0]["name"] == "geo.area" and docs[0]["parameters"]["type"] == "dict"  # the docs are not changed


# -- (4) irrelevance and relevance ----------------------------------------------------------------------------


@pytest.mark.parametrize("output, valid", [
    ("I cannot answer that with these functions.", True),
    ("[]", True),
    ([], True),
    ("hypot(x=", True),  # undecodable: counted as no call, as BFCL counts it (issue #443)
    ("hypot(x=3)", False),
    ([{"name": "hypot", "arguments": "{}"}], False),
    ([{"name": "hypot", "arguments": "[1]"}], True),  # not a call's arguments: BFCL sees no call
])
def test_irrelevance_and_relevance(output, valid):
    irrelevance = check_entry("irrelevance", [HYPOT], None, output, language="python", underscore_to_dot=False)
    assert irrelevance.valid is valid
    assert irrelevance.reason == ("" if valid else "call_in_irrelevance")
    if not valid:
        assert irrelevance.error_type == "irrelevance_error:decoder_success"
    relevance = check_entry("live_relevance", [HYPOT], None, output, language="python", underscore_to_dot=False)
    assert relevance.valid is not valid
    assert relevance.error_type == ("relevance_error:decoder_failed" if valid else "")
    if output == "hypot(x=":
        assert "undecodable" in irrelevance.message
