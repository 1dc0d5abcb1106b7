"""The Dockerfile parser and Docker's word substitution (pyd/engine/dockerfile.py)."""

import random

import pytest

from pyd import errors
from pyd.engine import dockerfile as d


def one(text):
    return d.parse(text).instructions[0]


# ------------------------------------------------------------ structure

def test_comments_empty_lines_and_keywords_any_case():
    df = d.parse("# a comment\n\n   # indented comment\nfrom busybox\n\n  run echo hi\n")
    assert [(i.cmd, i.line, i.args) for i in df.instructions] == [
        ("FROM", 4, "busybox"), ("RUN", 6, "echo hi")]
    assert df.instructions[1].original == "run echo hi"


def test_continuations_join_lines_and_skip_comments_and_empty_lines():
    df = d.parse("FROM x\nRUN echo a \\\n  # a comment\n\n    b \\  \n c\nCMD z\n")
    run = df.instructions[1]
    assert run.line == 2
    assert run.args == "echo a     b  c"
    assert run.original == "RUN echo a     b  c"
    assert df.instructions[2].line == 7


def test_trailing_continuation_at_end_of_file():
    assert one("RUN a \\").args == "a"


def test_crlf_and_bom():
    df = d.parse("\ufeffFROM x\r\nRUN a \\\r\n b\r\n")
    assert [i.args for i in df.instructions] == ["x", "a  b"]


@pytest.mark.parametrize("text,escape,directives", [
    ("# escape=`\nFROM x\n", "`", {"escape": "`"}),
    ("# escape=\\\nFROM x\n", "\\", {"escape": "\\"}),
    ("#syntax=docker/dockerfile:1\n# ESCAPE = `\nFROM x\n", "`",
     {"syntax": "docker/dockerfile:1", "escape": "`"}),
    # A directive after any other line is only a comment.
    ("FROM x\n# escape=`\n", "\\", {}),
    ("\n# escape=`\nFROM x\n", "\\", {}),
])
def test_directives(text, escape, directives):
    df = d.parse(text)
    assert (df.escape, df.directives) == (escape, directives)


def test_backtick_escape_with_windows_paths():
    df = d.parse("# escape=`\nFROM windowsservercore\nCOPY testfile.txt c:\\\nRUN dir c:\\ `\n  /b\n"
                 "WORKDIR c:\\Users\\$NAME\n")
    copy, run, workdir = df.instructions[1:]
    assert d.instruction_args(copy) == ["testfile.txt", "c:\\"]
    assert run.args == "dir c:\\   /b"
    assert d.instruction_args(workdir, {"NAME": "me"}) == ["c:\\Users\\me"]


@pytest.mark.parametrize("text,args,is_json", [
    ('CMD ["a", "b c"]', ["a", "b c"], True),
    ("CMD []", [], True),
    ("CMD echo [x]", "echo [x]", False),
    ('CMD ["a", 1]', '["a", 1]', False),       # not all strings: the shell form, as Docker
    ("CMD [\"a\"", "[\"a\"", False),          # malformed JSON: the shell form
    ('ENTRYPOINT   ["x"]  ', ["x"], True),
    ('RUN ["sh","-c","ls"]', ["sh", "-c", "ls"], True),
    ('VOLUME ["/a", "/b"]', ["/a", "/b"], True),
    ("VOLUME /a /b", "/a /b", False),
    ('SHELL ["powershell", "-c"]', ["powershell", "-c"], True),
    ('ENV a=["x"]', 'a=["x"]', False),        # ENV has no JSON form
])
def test_json_and_shell_forms(text, args, is_json):
    i = one(text)
    assert (i.args, i.json) == (args, is_json)


def test_flags():
    i = one('COPY --from=build --chown="1:2" a b')
    assert i.flags == {"from": "build", "chown": "1:2"}
    assert i.args == "a b"
    assert one("FROM --platform=linux/amd64 x AS y").flags == {"platform": "linux/amd64"}
    assert one("COPY -- --from=x b").flags == {}
    assert one("COPY -- --from=x b").args == "--from=x b"
    assert one('COPY --chown=a\\ b"c d" x y').flags == {"chown": "a bc d"}


def test_unknown_instruction_is_kept():
    i = one("FOO --bar=1 baz")
    assert (i.cmd, i.flags, i.args) == ("FOO", {"bar": "1"}, "baz")
    assert d.instruction_args(i) == ["baz"]


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("text,line,message", [
    ("FROM x\nCOPY --foo=1 a b\n", 2, "unknown flag: foo"),
    ("FROM x\nRUN --mount=type=cache echo\n", 2, "unknown flag: mount"),
    ("FROM x\nCOPY --from a b\n", 2, "missing a value on flag: from"),
    ("FROM x\nCOPY --from=a --from=b a b\n", 2, "duplicate flag specified: from"),
    ("# escape=x\nFROM x\n", 1, "invalid escape token 'x' does not match ` or \\"),
    ("# escape=`\n# escape=\\\nFROM x\n", 2, "only one escape parser directive can be used"),
    ("FROM a b\n", 1, "FROM requires either one or three arguments"),
    ("FROM a AS 1x\n", 1, "invalid name for build stage"),
    ("FROM\n", 1, "FROM requires either one or three arguments"),
    ("FROM x\nCOPY a\n", 2, "COPY requires at least two arguments"),
    ("FROM x\nADD\n", 2, "ADD requires at least two arguments"),
    ("FROM x\nENV\n", 2, "ENV requires at least one argument"),
    ("FROM x\nENV a\n", 2, "ENV must have two arguments"),
    ("FROM x\nENV a=1 b\n", 2, 'can\'t find = in "b"'),
    ("FROM x\nENV =1\n", 2, "ENV names can not be blank"),
    ("FROM x\nLABEL\n", 2, "LABEL requires at least one argument"),
    ("FROM x\nARG =x\n", 2, "ARG names can not be blank"),
    ("FROM x\nUSER\n", 2, "USER requires exactly one argument"),
    ("FROM x\nWORKDIR\n", 2, "WORKDIR requires exactly one argument"),
    ("FROM x\nSTOPSIGNAL\n", 2, "STOPSIGNAL requires exactly one argument"),
    ("FROM x\nRUN\n", 2, "RUN requires at least one argument"),
    ("FROM x\nSHELL /bin/bash -c\n", 2, "SHELL requires the arguments to be in JSON form"),
    ("FROM x\nSHELL []\n", 2, "SHELL requires at least one argument"),
    ('FROM x\nVOLUME ["/a", ""]\n', 2, "VOLUME specified can not be an empty string"),
    ("FROM x\nONBUILD ONBUILD RUN x\n", 2, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("FROM x\nONBUILD FROM y\n", 2, "FROM isn't allowed as an ONBUILD trigger"),
    ("FROM x\nonbuild maintainer me\n", 2, "MAINTAINER isn't allowed as an ONBUILD trigger"),
    ("FROM x\nONBUILD\n", 2, "ONBUILD requires at least one argument"),
    ("FROM x\nONBUILD COPY --bad=1 a b\n", 2, "unknown flag: bad"),
    ("FROM x\nHEALTHCHECK\n", 2, "HEALTHCHECK requires at least one argument"),
    ("FROM x\nHEALTHCHECK NONE x\n", 2, "HEALTHCHECK NONE takes no arguments"),
    ("FROM x\nHEALTHCHECK RUN x\n", 2, 'Unknown type "RUN" in HEALTHCHECK (try CMD)'),
    ("FROM x\nHEALTHCHECK CMD\n", 2, "Missing command after HEALTHCHECK CMD"),
    ("FROM x\nHEALTHCHECK --interval=5 CMD x\n", 2, 'time: invalid duration "5"'),
    ("FROM x\nHEALTHCHECK --timeout=1us CMD x\n", 2, "cannot be less than 1ms"),
    ("FROM x\nHEALTHCHECK --retries=0 CMD x\n", 2, "--retries must be at least 1 (not 0)"),
    ("FROM x\nHEALTHCHECK --retries=x CMD x\n", 2, "invalid syntax"),
    ("FROM x\nHEALTHCHECK --start-interval=1s CMD x\n", 2, "unknown flag: start-interval"),
])
def test_parse_errors_name_the_line(text, line, message):
    with pytest.raises(errors.BadParameter) as e:
        d.parse(text)
    assert str(e.value).startswith(f"Dockerfile parse error line {line}: ")
    assert message in str(e.value)


@pytest.mark.parametrize("text", ["", "\n\n# only a comment\n", "   \n\\\n"])
def test_no_instructions(text):
    with pytest.raises(errors.BadParameter, match="file with no instructions"):
        d.parse(text)


def test_not_text():
    with pytest.raises(errors.BadParameter):
        d.parse(b"FROM x")


# ------------------------------------------------------------ substitution

ENV = {"A": "a", "B": "b c", "EMPTY": "", "P": "/path"}


@pytest.mark.parametrize("word,out", [
    ("$A", "a"), ("${A}", "a"), ("x${A}y", "xay"), ("$Ax", ""), ("$A.x", "a.x"),
    ("$NOPE", ""), ("${NOPE}", ""),
    ("${NOPE:-def}", "def"), ("${EMPTY:-def}", "def"), ("${A:-def}", "a"),
    ("${NOPE-def}", "def"), ("${EMPTY-def}", ""), ("${A-def}", "a"),
    ("${A:+alt}", "alt"), ("${EMPTY:+alt}", ""), ("${NOPE:+alt}", ""),
    ("${A+alt}", "alt"), ("${EMPTY+alt}", "alt"), ("${NOPE+alt}", ""),
    ("${NOPE:-$A}", "a"), ("${NOPE:-${B}x}", "b cx"), ("${NOPE:-'q}'}", "q}"),
    ("${A:?msg}", "a"),
    ("'$A'", "$A"), ('"$A"', "a"), ('"${B}"', "b c"), ("'a\\b'", "a\\b"),
    ('"a\\"b"', 'a"b'), ('"a\\$A"', "a$A"), ('"a\\\\b"', "a\\b"), ('"a\\xb"', "a\\xb"),
    ("\\$A", "$A"), ("a\\ b", "a b"), ("a\\", "a"), ("\\'x", "'x"),
    ("$", "$"), ("a$ b", "a$ b"), ("$1", ""), ("${P}/bin", "/path/bin"),
    ('"a"\'b\'c', "abc"),
])
def test_expand(word, out):
    assert d.expand(word, ENV) == out


def test_expand_backtick_escape():
    assert d.expand("c:\\dir\\$A", ENV, "`") == "c:\\dir\\a"
    assert d.expand("`$A", ENV, "`") == "$A"
    assert d.expand('"x`"y"', ENV, "`") == 'x"y'


def test_expand_takes_docker_env_lists():
    assert d.expand("$A-$B", ["A=1", "B=2", "A=3"]) == "3-2"


@pytest.mark.parametrize("text,out", [
    ("a b  c", ["a", "b", "c"]),
    ("$B x", ["b", "c", "x"]),          # an unquoted variable is split
    ('"$B" x', ["b c", "x"]),
    ("'a b' \"c d\"", ["a b", "c d"]),
    ("a\\ b", ["a b"]),
    ("'' x", ["", "x"]),
    ("", []),
])
def test_expand_words(text, out):
    assert d.expand_words(text, ENV) == out


@pytest.mark.parametrize("word,message", [
    ("'abc", "matching single-quote"),
    ('"abc', "matching double-quote"),
    ("${A", "missing '}'"),
    ("${A:-x", "missing '}'"),
    ("${A:-'x}", "missing '}'"),           # Docker reports the brace at the end
    ("${A:-'x'", "missing '}'"),
    ("${}", "bad substitution"),
    ("${:x}", "bad substitution"),
    ("${A%x}", "unsupported modifier (%) in substitution"),
    ("${NOPE:?}", "NOPE: is not allowed to be unset"),
    ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
    ("${NOPE?gone}", "NOPE: gone"),
    ("${A:-" * 200 + "x", "nested too deeply"),
])
def test_expand_errors(word, message):
    with pytest.raises(errors.BadParameter, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("$", r"\$").replace("{", r"\{").replace("}", r"\}")):
        d.expand(word, ENV)


def test_substitution_error_names_the_line():
    df = d.parse("FROM x\nWORKDIR '/a\n")
    with pytest.raises(errors.BadParameter, match="^Dockerfile parse error line 2: .*single-quote"):
        d.instruction_args(df.instructions[1])


# -------------------------------------------------- per-instruction args

@pytest.mark.parametrize("text,out", [
    ('ENV a=1 b="x y" c=$A d=\\$A', [("a", "1"), ("b", "x y"), ("c", "a"), ("d", "$A")]),
    ("ENV name the  rest $A", [("name", "the  rest a")]),
    ("ENV name \"quoted value\"", [("name", "quoted value")]),
    ('ENV a="multi \\\n  line"', [("a", "multi   line")]),
    ('LABEL "com.x"="v w" k=$B', [("com.x", "v w"), ("k", "b c")]),
    ("LABEL old style", [("old", "style")]),
    ("ARG x", [("x", None)]),
    ("ARG x=1 y=${A}z", [("x", "1"), ("y", "az")]),
    ("EXPOSE 80 53/udp $PORT 8000-8002/TCP", ["80/tcp", "53/udp", "8080/tcp", "8000/tcp",
                                               "8001/tcp", "8002/tcp"]),
    ("COPY $A ${P}/x /dst/", ["a", "/path/x", "/dst/"]),
    ('ADD ["$A", "/d e"]', ["a", "/d e"]),
    ("VOLUME /v/$A /w", ["/v/a", "/w"]),
    ("USER $A:${A}", ["a:a"]),
    ("WORKDIR $P/$NOPE", ["/path/"]),
    ("STOPSIGNAL SIG$A", ["SIGa"]),
    ("FROM base:$A", ["base:a"]),
    ("FROM base AS Build", ["base", "AS", "build"]),
    ("RUN echo $A", ["echo $A"]),                    # the shell substitutes, not Docker
    ('CMD ["echo", "$A"]', ["echo", "$A"]),
    ("ENTRYPOINT $A", ["$A"]),
    ("MAINTAINER Me <$A>", ["Me <$A>"]),
    ("ONBUILD RUN echo $A", ["RUN echo $A"]),
])
def test_instruction_args(text, out):
    assert d.instruction_args(one(text), dict(ENV, PORT="8080")) == out


@pytest.mark.parametrize("text,message", [
    ("EXPOSE 80/foo", "invalid proto: foo"),
    ("EXPOSE x", "invalid containerPort: x"),
    ("EXPOSE 70000", "invalid containerPort"),
    ("EXPOSE 90-80", "invalid containerPort"),
    ("VOLUME $EMPTY", "VOLUME specified can not be an empty string"),
    ("FROM $NOPE", "base name ($NOPE) should not be blank"),
])
def test_instruction_args_errors(text, message):
    with pytest.raises(errors.BadParameter, match="^Dockerfile parse error line 1: ") as e:
        d.instruction_args(one(text), ENV)
    assert message in str(e.value)


def test_onbuild_keeps_its_parsed_trigger():
    i = one('ONBUILD COPY --from=x ["a", "b"]')
    t = i.trigger
    assert (t.cmd, t.flags, t.args, t.json) == ("COPY", {"from": "x"}, ["a", "b"], True)


def test_command_wraps_the_shell_form():
    assert d.command(one("RUN echo hi")) == ["/bin/sh", "-c", "echo hi"]
    assert d.command(one("RUN echo hi"), ["pwsh", "-c"]) == ["pwsh", "-c", "echo hi"]
    assert d.command(one('CMD ["a"]')) == ["a"]


@pytest.mark.parametrize("text,out", [
    ("HEALTHCHECK NONE", {"Test": ["NONE"]}),
    # Zero durations and retries are left out, as Docker's HealthConfig (omitempty) does.
    ("HEALTHCHECK CMD curl -f http://localhost/ || exit 1",
     {"Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]}),
    ('HEALTHCHECK --interval=30s --timeout=1m30s --start-period=1.5s --retries=3 cmd ["true"]',
     {"Test": ["CMD", "true"], "Interval": 30 * 10**9, "Timeout": 90 * 10**9,
      "StartPeriod": 1500 * 10**6, "Retries": 3}),
    ("HEALTHCHECK --interval=1h2m3s4ms5us6ns CMD x",
     {"Test": ["CMD-SHELL", "x"], "Interval": 3723004005006}),
    ("HEALTHCHECK --interval=0 CMD x", {"Test": ["CMD-SHELL", "x"]}),
])
def test_healthcheck(text, out):
    assert d.instruction_args(one(text)) == [out]


@pytest.mark.parametrize("s,ns", [
    ("30s", 30 * 10**9), ("1m30s", 90 * 10**9), ("1.5h", 5400 * 10**9), ("500ms", 5 * 10**8),
    (".5s", 5 * 10**8), ("2\u00b5s", 2000), ("0", 0), ("-1s", -10**9),
    ("", None), ("5", None), ("1x", None), ("s", None), ("1s2", None), (".s", None),
])
def test_parse_duration(s, ns):
    assert d.parse_duration(s) == ns


# ------------------------------------------------------------------ stages

MULTI = """\
ARG TAG=3.18
ARG BASE=alpine:${TAG}
ARG PLAT
FROM --platform=$PLAT $BASE AS Build
ARG TAG
RUN make
FROM scratch
COPY --from=build /out /
from build as Final
CMD ["x"]
"""


def test_stages_with_global_args():
    st = d.stages(d.parse(MULTI), {"PLAT": "linux/arm64"})
    assert [(s.name, s.base, s.platform, s.index) for s in st] == [
        ("build", "alpine:3.18", "linux/arm64", 0), (None, "scratch", None, 1),
        ("final", "build", None, 2)]
    assert [i.cmd for i in st[0].instructions] == ["ARG", "RUN"]
    assert [i.cmd for i in st[1].instructions] == ["COPY"]
    assert st[2].origin.line == 9
    assert d.stage_by_name(st, "BUILD") is st[0]
    assert d.stage_by_name(st, "1") is st[1]
    assert d.stage_by_name(st, "nope") is None


def test_build_args_override_global_defaults():
    df = d.parse(MULTI)
    assert d.global_args(df, {"TAG": "edge"}) == {"TAG": "edge", "BASE": "alpine:edge"}
    assert d.stages(df, {"BASE": "debian"})[0].base == "debian"
    assert d.stages(df)[0].platform == ""


@pytest.mark.parametrize("text,message", [
    ("RUN x\nFROM y\n", "line 1: no build stage in current context"),
    ("ARG x\n", "no build stage in current context"),
    ("FROM a AS x\nFROM b AS X\n", 'line 2: duplicate stage name "x"'),
    ("ARG B=\nFROM $B\n", "line 2: base name ($B) should not be blank"),
    ("FROM --platform=${A x\n", "line 1: syntax error: missing '}'"),
])
def test_stage_errors(text, message):
    with pytest.raises(errors.BadParameter, match="Dockerfile parse error") as e:
        d.stages(d.parse(text))
    assert message in str(e.value)


# --------------------------------------------------------------- fuzzing

FULL = """\
# escape=\\
ARG V=1
FROM busybox:$V AS base
MAINTAINER me
LABEL a=1 "b c"="d e"
ENV X=1 Y="two words" \\
    Z=${X:-none}
ENV OLD legacy value
EXPOSE 80 53/udp
VOLUME ["/data"]
USER nobody:${X}
WORKDIR /app/$Y
ADD --chown=1:1 a.tar /
COPY --from=base ["/a", "/b"]
ONBUILD RUN echo on
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --retries=2 CMD ["true"]
SHELL ["/bin/sh", "-c"]
RUN echo 'hi' \\
  # inner comment
  && echo "$X"
CMD echo done
ENTRYPOINT ["/bin/sh"]
"""


def _everything(text):
    df = d.parse(text)
    for s in d.stages(df, {"V": "2"}):
        for i in s.instructions:
            d.instruction_args(i, {"X": "1", "Y": "2"})
            if i.cmd in ("RUN", "CMD", "ENTRYPOINT"):
                d.command(i)


def test_the_full_file_parses():
    _everything(FULL)
    df = d.parse(FULL)
    assert len(df.instructions) == 19
    assert [s.name for s in d.stages(df)] == ["base"]


def test_fuzz_only_bad_parameter_escapes():
    rng = random.Random(12)
    alphabet = "\\`'\"$ {}:-+?=#[],\n\t\rAz09/%"
    for _ in range(500):
        chars = list(FULL)
        for _ in range(rng.randint(1, 8)):
            op, pos = rng.randrange(3), rng.randrange(len(chars) + 1)
            if op == 0 and pos < len(chars):
                del chars[pos]
            elif op == 1:
                chars.insert(pos, rng.choice(alphabet))
            elif pos < len(chars):
                chars[pos] = rng.choice(alphabet)
        try:
            _everything("".join(chars))
        except errors.BadParameter:
            pass
