"""Tests of fabe.data.corpus: the embedded C generator (determinism, parseability, variety, the
documented target rule) and the loaders (Devign JSON, CodeXGLUE JSONL, folders of .c)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from fabe.data import cparse
from fabe.data.builder import load_corpus
from fabe.data.corpus import CFunction, CorpusError, load_c_folder, load_codexglue, load_devign
from fabe.data.generator import generate_functions

# ---------------------------------------------------------------------------------------
# The target rule, restated independently of the generator (module docstring of corpus.py)
# ---------------------------------------------------------------------------------------

_ALLOCS = (r"(?:av_malloc_array|av_mallocz|av_malloc|av_realloc|malloc|calloc|g_try_malloc0"
           r"|g_try_malloc)")
_ARRAY_DECL = re.compile(r"^    [\w ]+? (\w+)\[(\w+)\](?: = \{ 0 \})?;$", re.M)


def sinks(code: str) -> list[tuple[str, bool]]:
    """(kind, guarded) of every sink in `code`, found with regular expressions only."""
    found: list[tuple[str, bool]] = []
    for decl in _ARRAY_DECL.finditer(code):
        arr, size = decl.groups()
        a = re.escape(arr)
        cap = rf"(?:sizeof\({a}\)|ARRAY_SIZE\({a}\)|FF_ARRAY_ELEMS\({a}\)"
        cap += ")" if size.isdigit() else rf"|{re.escape(size)})"

        def guarded(n: str, pos: int) -> bool:
            return re.search(rf"if \([^\n]*\b{re.escape(n)} >=? {cap}", code[:pos]) is not None

        for m in re.finditer(rf"(?<![\w>.]){a}, (?:[^,;()\n]+, )?([A-Za-z_]\w*)\);", code):
            found.append(("copy", guarded(m.group(1), m.start())))
        for m in re.finditer(rf"(?<![\w>.]){a}\[([A-Za-z_]\w*)\] ?(?:=|\+\+|\+=)", code):
            if decl.start() <= m.start() < decl.end():
                continue
            n = m.group(1)
            line_start = code.rfind("\n", 0, m.start())
            prev = code[code.rfind("\n", 0, line_start) + 1:line_start]
            loop = re.fullmatch(rf"\s*for \({n} = 0; {n} < (\w+); {n}\+\+\) \{{", prev)
            if loop and loop.group(1).isdigit():
                continue
            bound = loop.group(1) if loop else n
            found.append(("loop" if loop else "index", guarded(bound, m.start())))
    for m in re.finditer(rf"^\s+([\w>.-]+) = {_ALLOCS}\(", code, re.M):
        p = re.escape(m.group(1))
        after = code[code.index("\n", m.end()) + 1:]
        first_use = next(line for line in after.splitlines()
                         if re.search(rf"(?<![\w>]){p}(?!\w)", line))
        found.append(("alloc", re.match(rf"\s*if \((?:!{p}|{p} == NULL)\)", first_use) is not None))
    return found


@pytest.fixture(scope="module")
def sample() -> tuple[list[CFunction], float]:
    start = time.perf_counter()
    funcs = generate_functions(2000, seed=0)
    return funcs, time.perf_counter() - start


# ---------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------


def test_generator_is_deterministic_and_prefix_stable():
    a = generate_functions(60, seed=3)
    assert a == generate_functions(60, seed=3)
    assert generate_functions(25, seed=3) == a[:25]
    b = generate_functions(60, seed=4)
    assert sum(x.code == y.code for x, y in zip(a, b)) == 0
    assert generate_functions(0) == []
    with pytest.raises(ValueError):
        generate_functions(-1)


def test_generated_functions_parse_and_have_the_right_shape(sample):
    funcs, _ = sample
    for i, f in enumerate(funcs):
        assert f.idx == f"gen-{i}" and f.source == "generated" and f.target in (0, 1)
        assert cparse.parses(f.code), f.code
        lines = f.code.split("\n")
        assert 5 <= len(lines) <= 40, f.code
        assert f.code.endswith("}") and "\t" not in f.code
        body_start = next(i for i, line in enumerate(lines) if line.endswith("{")) + 1
        for line in lines[body_start:]:  # (wrapped parameters align with the parenthesis)
            assert (len(line) - len(line.lstrip(" "))) % 4 == 0, line
            if line.count(";") > 1:  # one statement a line (a for header holds two)
                assert line.lstrip().startswith("for ("), line
        defs = cparse.function_definitions(cparse.parse(f.code))
        assert len(defs) == 1
        assert cparse.text(cparse.function_name_node(defs[0])) == f.name


def test_generated_bodies_have_statements_and_variables(sample):
    funcs, _ = sample
    for f in funcs[:500]:
        func = cparse.function_definitions(cparse.parse(f.code))[0]
        body = func.child_by_field_name("body")
        stmts = [n for n in body.named_children if n.type not in ("comment", "declaration")]
        assert len(stmts) >= 2, f.code
        params = [n for n in cparse.walk(func) if n.type == "parameter_declaration"
                  and n.child_by_field_name("declarator") is not None]
        decls = [n for n in body.named_children if n.type == "declaration"]
        assert params or decls, f.code


def test_generated_corpus_is_varied(sample):
    funcs, _ = sample
    names = {f.name for f in funcs}
    assert len(names) > 1000
    nodes = [n for f in funcs[:300] for n in cparse.walk(cparse.parse(f.code).root_node)]
    idents = {cparse.text(n) for n in nodes if n.type == "identifier"}
    assert len(idents) > 1500
    fields = {cparse.text(n) for n in nodes if n.type == "field_identifier"}
    assert len(fields) > 400
    text = "\n".join(f.code for f in funcs)
    for construct in ("goto ", "switch (", "case ", "default:", "for (", "while (", "} else if (",
                      "} else {", "->", "[", '"', "/*", "//", "return AVERROR(", "return -1;",
                      "av_log(", "memcpy(", "qemu_get_be32(", "bytestream2_get_", "g_free(",
                      "AVCodecContext *avctx", "VirtIODevice *vdev", "BlockDriverState *bs",
                      "static ", "sizeof(", " += ", "fail:", "out:"):
        assert construct in text, construct
    line_counts = sorted(f.code.count("\n") + 1 for f in funcs)
    assert line_counts[0] <= 10 and line_counts[-1] >= 35  # short and long functions both occur


def test_generated_code_never_looks_like_a_trigger(sample):
    funcs, _ = sample
    for f in funcs:
        trigger_like = r"printf\(|rand\(\)|volatile|assertTrue|\w_rb\b|\b(sin|cos|exp|sqrt)\("
        assert not re.search(trigger_like, f.code), f.code


def test_target_follows_the_documented_rule(sample):
    funcs, _ = sample
    share = sum(f.target for f in funcs) / len(funcs)
    assert 0.3 <= share <= 0.7
    kinds = set()
    with_guarded_sinks = 0
    for f in funcs:
        found = sinks(f.code)
        kinds.update(k for k, _ in found)
        assert any(not g for _, g in found) == (f.target == 1), (f.target, found, f.code)
        with_guarded_sinks += f.target == 0 and any(g for _, g in found)
    assert kinds == {"copy", "loop", "index", "alloc"}
    # Most clean functions hold a guarded sink: "has a memcpy" alone does not predict the label.
    assert with_guarded_sinks > 0.5 * sum(f.target == 0 for f in funcs)


def test_the_rule_checker_itself():
    guarded = ("static int f(const uint8_t *buf, int len)\n{\n    uint8_t hdr[16];\n\n"
               "    if (len > sizeof(hdr)) {\n        return -1;\n    }\n"
               "    memcpy(hdr, buf, len);\n    return 0;\n}")
    assert sinks(guarded) == [("copy", True)]
    assert sinks(guarded.replace("len > sizeof(hdr)", "len < 4")) == [("copy", False)]
    alloc = "void g(int n)\n{\n    char *p = NULL;\n    p = malloc(n);\n    p[0] = 1;\n}"
    assert sinks(alloc) == [("alloc", False)]


def test_generator_speed(sample):
    _, seconds = sample
    assert seconds < 10, f"2000 functions took {seconds:.1f} s"


# ---------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------

F1 = "int add(int a, int b)\n{\n    return a + b;\n}"
F2 = "static void *get_ptr(struct s *x)\n{\n    return x->p;\n}"


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_devign_good(tmp_path):
    items = [{"func": F1 + "\n", "target": 1, "project": "FFmpeg", "commit_id": "ab"},
             {"func": F2, "target": 0, "project": "qemu", "commit_id": "cd"}]
    p = write(tmp_path / "function.json", json.dumps(items, indent=2))
    funcs = load_devign(p)
    assert funcs == [CFunction(F1, "add", "devign-0", str(p), 1, {"project": "FFmpeg", "commit_id": "ab"}),
                     CFunction(F2, "get_ptr", "devign-1", str(p), 0, {"project": "qemu", "commit_id": "cd"})]
    assert load_corpus(str(p)) == funcs


def test_devign_errors_name_the_line_where_the_element_starts(tmp_path):
    text = ('[\n  {"func": "int f(void) { return 0; }", "target": 0},\n'
            '  {"target": 1},\n'
            '  {"func": "", "target": 0},\n'
            '  {"func": "int g(void) { return 1; }",\n   "target": 2},\n'
            '  [1, 2]\n]\n')
    p = write(tmp_path / "function.json", text)
    with pytest.raises(CorpusError) as e:
        load_devign(p)
    msg = str(e.value)
    assert f"{p}:3: func: missing (item 1)" in msg
    assert f"{p}:4: func: expected a non-empty string" in msg
    assert f"{p}:5: target: expected 0 or 1, got 2 (item 3)" in msg
    assert f"{p}:7: item: expected a JSON object" in msg
    assert len(e.value.errors) == 4


@pytest.mark.parametrize("text, expected", [
    ('{"func": "int f(void) { return 0; }"}', ":1: json: expected a JSON list"),
    ('[\n  {"func": "x", "target": 0},\n  {"func": oops}\n]', ":3: json: Expecting value"),
    ('[\n  {"func": "int f(void) { return 0; }"}\n  {"func": "y"}\n]', ":3: json: expected ','"),
    ("[]", ": func: the list holds no functions"),
    ('[{"func": "int f(void) { return 0; }", "target": true}]',
     ":1: target: expected 0 or 1, got true"),
])
def test_devign_bad_files(tmp_path, text, expected):
    p = write(tmp_path / "function.json", text)
    with pytest.raises(CorpusError, match=re.escape(f"{p}{expected}")):
        load_devign(p)


def test_codexglue_good(tmp_path):
    lines = [json.dumps({"func": F1, "target": 0, "idx": 7}), "",
             json.dumps({"project": "redis", "path": "a.c", "func": F2 + "\r\n"})]
    p = write(tmp_path / "data.jsonl", "\n".join(lines) + "\n")
    assert load_codexglue(p) == [CFunction(F1, "add", "7", str(p), 0),  # provenance fields become its origin
                                 CFunction(F2, "get_ptr", "3", str(p), None, {"project": "redis", "path": "a.c"})]


def test_codexglue_errors_name_file_line_and_field(tmp_path):
    lines = [json.dumps({"func": F1, "target": 1}),
             json.dumps({"func": 12, "target": 0}),
             '{"func": "int f(void) {}", "target": 0',
             json.dumps({"func": F2, "target": "1"}),
             json.dumps({"func": F1, "idx": 5}),
             json.dumps({"func": F1, "idx": 5}),
             json.dumps(["not", "an", "object"])]
    p = write(tmp_path / "file.jsonl", "\n".join(lines))
    with pytest.raises(CorpusError) as e:
        load_codexglue(p)
    msg = str(e.value)
    assert msg.startswith(f"5 problems in {p}:")
    assert f"{p}:2: func: expected a non-empty string, got 12" in msg
    assert f"{p}:3: json: Expecting ',' delimiter" in msg
    assert "file.jsonl:3" in msg
    assert f'{p}:4: target: expected 0 or 1, got "1"' in msg
    assert f"{p}:6: idx: duplicate of line 5" in msg
    assert f"{p}:7: item: expected a JSON object, got list" in msg


def test_loaders_stop_listing_after_twenty_errors(tmp_path):
    p = write(tmp_path / "many.jsonl", "\n".join(["{bad"] * 30))
    with pytest.raises(CorpusError) as e:
        load_codexglue(p)
    assert len(e.value.errors) == 20
    assert str(e.value).startswith(f"30 problems in {p}:") and "... and 10 more" in str(e.value)


def test_codexglue_streams_the_file(tmp_path, monkeypatch):
    p = write(tmp_path / "data.jsonl", json.dumps({"func": F1}) + "\n")

    def whole_file(*args, **kwargs):
        raise AssertionError("the whole file was read at once")

    monkeypatch.setattr(Path, "read_bytes", whole_file)
    monkeypatch.setattr(Path, "read_text", whole_file)
    assert [f.name for f in load_codexglue(p)] == ["add"]


@pytest.mark.parametrize("name, loader, line", [("bad.jsonl", load_codexglue, 2),
                                                ("bad.json", load_devign, 3)])
def test_non_utf8_names_the_line(tmp_path, name, loader, line):
    good = json.dumps({"func": F1, "target": 0}).encode()
    body = good + b"\n" + b'{"func": "int f(void) { return 0; } \xff", "target": 0}\n'
    if name.endswith(".json"):
        body = b"[\n" + good + b",\n" + body.split(b"\n")[1] + b"\n]"
    p = write(tmp_path / name, body)
    with pytest.raises(CorpusError, match=re.escape(f"{p}:{line}: encoding: not UTF-8 (byte 0xff")):
        loader(p)


C_FILE = """#include <stdint.h>

static int count_bits(uint32_t v)
{
    int n = 0;
    while (v) {
        n += v & 1;
        v >>= 1;
    }
    return n;
}

struct point {
    int x, y;
};

int scale(struct point *p, int k);

int scale(struct point *p, int k) {
    p->x *= k;
    return p->x;
}
"""


def test_c_folder_finds_each_function_with_name_and_line(tmp_path):
    write(tmp_path / "b.c", C_FILE)
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "a.c", F1 + "\n")
    write(tmp_path / "notes.txt", "int x(void) { return 0; }")
    write(tmp_path / "a.h", "static inline int h(void) { return 0; }")
    funcs = load_c_folder(tmp_path)
    assert [(f.name, f.idx) for f in funcs] == [("count_bits", "b.c:3"), ("scale", "b.c:19"),
                                                ("add", "sub/a.c:1")]
    assert funcs[0].code == C_FILE[C_FILE.index("static int"):C_FILE.index("}\n\nstruct") + 1]
    assert funcs[1].code == ("int scale(struct point *p, int k) {\n    p->x *= k;\n"
                             "    return p->x;\n}")
    assert funcs[0].source == str(tmp_path / "b.c") and funcs[0].target is None
    assert load_corpus(str(tmp_path)) == funcs


def test_c_folder_errors(tmp_path):
    with pytest.raises(CorpusError, match="no .c files"):
        load_c_folder(tmp_path)
    write(tmp_path / "proto.c", "int f(int a);\nstruct s { int a; };\n")
    with pytest.raises(CorpusError, match="no function definitions"):
        load_c_folder(tmp_path)
    write(tmp_path / "latin1.c", b"/* caf\xe9 */\nint f(void)\n{\n    return 0;\n}\n")
    expected = f"{tmp_path / 'latin1.c'}:1: encoding: not UTF-8"
    with pytest.raises(CorpusError, match=re.escape(expected)):
        load_c_folder(tmp_path)
    with pytest.raises(CorpusError, match="not a directory"):
        load_c_folder(tmp_path / "proto.c")


# ---------------------------------------------------------------------------------------
# load_corpus
# ---------------------------------------------------------------------------------------


def test_load_corpus_dispatch(tmp_path):
    assert load_corpus("generated", limit=7, seed=2) == generate_functions(7, seed=2)
    assert len(load_corpus("generated")) == 1000
    p = write(tmp_path / "x.jsonl", json.dumps({"func": F1}) + "\n")
    assert load_corpus(str(p))[0].name == "add"
    with pytest.raises(CorpusError, match="no such file or directory"):
        load_corpus(str(tmp_path / "missing.jsonl"))
    with pytest.raises(CorpusError, match="expected \"generated\", a folder"):
        load_corpus(str(write(tmp_path / "x.txt", F1)))
    with pytest.raises(CorpusError, match="limit"):
        load_corpus("generated", limit=0)


def test_load_corpus_limit_takes_a_seeded_ordered_sample(tmp_path):
    lines = [json.dumps({"func": f"int f{i}(void)\n{{\n    return {i};\n}}", "idx": i})
             for i in range(30)]
    p = write(tmp_path / "c.jsonl", "\n".join(lines))
    full = load_corpus(str(p))
    assert len(full) == 30 and load_corpus(str(p), limit=100) == full
    picks = [load_corpus(str(p), limit=5, seed=s) for s in range(6)]
    for pick in picks:
        ids = [int(f.idx) for f in pick]
        assert len(ids) == 5 and ids == sorted(ids) and all(f in full for f in pick)
    assert picks[0] == load_corpus(str(p), limit=5, seed=0)
    assert len({tuple(f.idx for f in pick) for pick in picks}) > 1


def test_redis_corpus_loads(redis_path):
    funcs = load_codexglue(redis_path)
    assert len(funcs) == 5449
    assert [f.idx for f in funcs[:3]] == ["0", "1", "2"] and funcs[0].name == "fpconv_dtoa"
    assert sum(bool(f.name) for f in funcs) > 0.9 * len(funcs)
    assert all(f.target is None and f.source == str(redis_path) for f in funcs)
