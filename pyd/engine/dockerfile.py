"""Dockerfile text -> instructions, stages and substituted arguments, as
moby's classic builder and the buildkit dockerfile frontend read them.

Pure logic: text in, data out, no I/O. The builder (issue 12) decides what
to do with each instruction, including an unknown one, which is kept here
because Docker's legacy and modern paths treat it differently (skip message
versus error). Every error is errors.BadParameter, worded as Docker words
it, prefixed "Dockerfile parse error line N:" so the client sees where.
"""

import re
from dataclasses import dataclass, field

from .. import errors
from .dockerfile_changes import json_array

# `# key=value` at the very top of the file, before any other line.
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*\Z")

# The flags the classic builder (dockerd 20.10) accepts, per instruction;
# any other --flag is Docker's "unknown flag" error.
_FLAGS = {
    "FROM": ("platform",),
    "COPY": ("from", "chown"),
    "ADD": ("chown",),
    "HEALTHCHECK": ("interval", "timeout", "start-period", "retries"),
}

# Instructions whose arguments may be a JSON array; the others take text.
_JSON_FORM = ("RUN", "CMD", "ENTRYPOINT", "ADD", "COPY", "VOLUME", "SHELL")

# Instructions whose arguments Docker substitutes ($VAR) itself; RUN, CMD and
# ENTRYPOINT are left to the shell, MAINTAINER and HEALTHCHECK are literal.
SUBSTITUTED = ("ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME",
               "WORKDIR", "ARG")

KNOWN = ("FROM", "MAINTAINER", "RUN", "CMD", "ENTRYPOINT", "ENV", "ARG", "LABEL", "EXPOSE",
         "VOLUME", "USER", "WORKDIR", "ADD", "COPY", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL")

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*\Z")
_MAX_NESTING = 64  # ${a:-${b:-...}} depth: bounds the lexer's recursion


@dataclass
class Instruction:
    """One logical line. `args` is a list when `json` is true (exec form),
    else the raw text after the keyword and flags (shell form)."""
    cmd: str            # upper-cased keyword, e.g. "RUN"
    original: str       # the logical line, continuations joined (history's CreatedBy)
    line: int           # 1-based line number where it starts
    flags: dict         # {"from": "build"}; a flag given without a value is True
    args: object        # list of str (json) or str (shell form)
    json: bool
    escape: str = "\\"
    trigger: "Instruction" = None   # ONBUILD's inner instruction


@dataclass
class Dockerfile:
    instructions: list
    escape: str = "\\"
    directives: dict = field(default_factory=dict)


@dataclass
class Stage:
    name: str           # lower-cased `AS name`, or None
    base: str           # the FROM image with global ARGs substituted ("scratch" included)
    platform: str       # --platform=, substituted, or None
    instructions: list  # the instructions after FROM, up to the next FROM
    index: int = 0
    origin: Instruction = None  # the FROM instruction itself


def _fail(line, msg):
    return errors.BadParameter(f"Dockerfile parse error line {line}: {msg}")


# ---------------------------------------------------------------- parsing

def parse(text):
    """The Dockerfile in `text` (str), validated as far as it can be without
    variables: argument counts, JSON-only forms, flags, HEALTHCHECK, ONBUILD."""
    if not isinstance(text, str):
        raise errors.BadParameter("the Dockerfile must be text")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
    escape, directives, i = "\\", {}, 0
    # Directives only count before the first other line (even an empty one).
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i])
        if not m:
            break
        key, value = m.group(1).lower(), m.group(2)
        if key in directives:
            raise _fail(i + 1, f"only one {key} parser directive can be used")
        if key == "escape":
            if value not in ("`", "\\"):
                raise _fail(i + 1, f"invalid escape token '{value}' does not match ` or \\")
            escape = value
        directives[key] = value
        i += 1
    continuation = re.compile(re.escape(escape) + r"[ \t]*$")

    def trim(s):
        """(s without a trailing escape, whether the logical line ends here)."""
        m = continuation.search(s)
        return (s[:m.start()], False) if m else (s, True)

    out = []
    while i < len(lines):
        start, line = i + 1, lines[i].lstrip()
        i += 1
        if not line or line.startswith("#"):
            continue
        part, done = trim(line)
        parts = [part]
        # Docker drops comment and empty lines inside a continuation.
        while not done and i < len(lines):
            nxt = lines[i]
            i += 1
            if not nxt.strip() or nxt.lstrip().startswith("#"):
                continue
            part, done = trim(nxt)
            parts.append(part)
        line = "".join(parts)
        if line.strip():
            out.append(_instruction(line, start, escape))
    if not out:
        raise errors.BadParameter("Dockerfile parse error: file with no instructions")
    return Dockerfile(out, escape, directives)


def _instruction(line, lineno, escape, nested=False):
    """One logical line -> Instruction; known instructions are checked, an
    unknown one is kept as it is for the builder to refuse or skip."""
    original = line.strip()
    word, _, rest = _split1(original)
    cmd = word.upper()
    flags, rest = _flags(rest, lineno)
    rest = rest.strip()
    if cmd in _JSON_FORM:
        v = json_array(rest)
        args, is_json = (v, True) if v is not None else (rest, False)
    else:
        args, is_json = rest, False
    instr = Instruction(cmd, original, lineno, flags, args, is_json, escape)
    if cmd in KNOWN:
        allowed = _FLAGS.get(cmd, ())
        for name in flags:
            if name not in allowed:
                raise _fail(lineno, f"unknown flag: {name}")
        _check(instr, nested)
    return instr


def _split1(s):
    """'RUN  a b' -> ('RUN', ' ', 'a b'): the keyword and the rest."""
    m = re.match(r"(\S+)(\s*)(.*)$", s, re.S)
    return m.group(1), m.group(2), m.group(3)


def _flags(rest, lineno):
    """Leading --name=value words (quotes and backslashes allowed in values)
    -> (dict, rest). A lone `--` ends the flags, as in Docker."""
    flags, pos, n = {}, 0, len(rest)
    while True:
        while pos < n and rest[pos].isspace():
            pos += 1
        if not rest.startswith("--", pos):
            break
        word, quote = "", None
        while pos < n and (quote or not rest[pos].isspace()):
            c = rest[pos]
            pos += 1
            if quote and c == quote:
                quote = None
            elif not quote and c in "'\"":
                quote = c
            elif c == "\\":   # Docker hard-codes the backslash here, whatever the escape
                if pos < n:
                    word += rest[pos]
                    pos += 1
            else:
                word += c
        if word == "--":
            break
        name, eq, value = word[2:].partition("=")
        if not name:
            raise _fail(lineno, f"unknown flag: {word}")
        if name in flags:
            raise _fail(lineno, f"duplicate flag specified: {name}")
        flags[name] = value if eq else True
    return flags, rest[pos:]


def _check(instr, nested):
    """Docker's parse-time checks, so an error names its line before any step runs."""
    cmd, args, ln = instr.cmd, instr.args, instr.line
    for name, value in instr.flags.items():
        if value is True:
            raise _fail(ln, f"missing a value on flag: {name}")
    empty = not args and not instr.json
    if cmd in ("ENV", "LABEL", "ARG", "EXPOSE", "VOLUME", "HEALTHCHECK", "ONBUILD", "RUN", "CMD",
               "ENTRYPOINT") and empty:
        raise _fail(ln, f"{cmd} requires at least one argument")
    if cmd in ("MAINTAINER", "USER", "WORKDIR", "STOPSIGNAL") and empty:
        raise _fail(ln, f"{cmd} requires exactly one argument")
    if cmd == "FROM":
        _from_words(instr)
    elif cmd in ("ADD", "COPY") and len(_list(instr)) < 2:
        raise _fail(ln, f"{cmd} requires at least two arguments")
    elif cmd in ("ENV", "LABEL"):
        _name_values(instr)
    elif cmd == "ARG":
        _arg_words(instr)
    elif cmd == "SHELL":
        if not instr.json:
            raise _fail(ln, "SHELL requires the arguments to be in JSON form")
        if not args:
            raise _fail(ln, "SHELL requires at least one argument")
    elif cmd == "VOLUME" and any(not p.strip() for p in _list(instr)):
        raise _fail(ln, "VOLUME specified can not be an empty string")
    elif cmd == "HEALTHCHECK":
        healthcheck(instr)
    elif cmd == "ONBUILD":
        if nested:
            raise _fail(ln, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        inner = _split1(args)[0].upper()
        if inner == "ONBUILD":
            raise _fail(ln, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if inner in ("FROM", "MAINTAINER"):
            raise _fail(ln, f"{inner} isn't allowed as an ONBUILD trigger")
        instr.trigger = _instruction(args, ln, instr.escape, nested=True)


def _list(instr):
    """JSON args as they are; shell-form args split on whitespace (Docker
    does not honour quotes in ADD, COPY, VOLUME's shell form)."""
    return list(instr.args) if instr.json else instr.args.split()


def _from_words(instr):
    """FROM image [AS name] -> (image, lower-cased name or None)."""
    words = instr.args.split()
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
        if not _STAGE_NAME.match(name):
            raise _fail(instr.line, f'invalid name for build stage: "{words[2]}", '
                                    "name can't start with a number or contain symbols")
        return words[0], name
    if len(words) != 1:
        raise _fail(instr.line, "FROM requires either one or three arguments")
    return words[0], None


def split_words(rest, escape="\\"):
    """Docker's parseWords: split on blanks outside quotes, keeping quotes and
    escapes in the words (the lexer removes them later)."""
    words, word, quote, in_word, blank_ok = [], "", None, False, False
    i, n = 0, len(rest)
    while i < n:
        c = rest[i]
        if quote:
            if c == quote:
                quote = None
            elif c == escape and quote != "'":
                if i + 1 == n:
                    break
                word += c
                i += 1
                c = rest[i]
            word += c
        elif c.isspace():
            if in_word and (blank_ok or word):
                words.append(word)
            word, in_word, blank_ok = "", False, False
        else:
            in_word = True
            if c in "'\"":
                quote, blank_ok = c, True
            elif c == escape:
                if i + 1 == n:
                    break
                word += c
                i += 1
                c = rest[i]
            word += c
        i += 1
    if in_word and (blank_ok or word):
        words.append(word)
    return words


def _name_values(instr):
    """ENV/LABEL text -> [(raw key, raw value)], both forms."""
    cmd, rest, ln = instr.cmd, instr.args, instr.line
    words = split_words(rest, instr.escape)
    if not words:
        raise _fail(ln, f"{cmd} requires at least one argument")
    if "=" not in words[0]:
        # Legacy `ENV name value with spaces`: the rest of the line is the value.
        parts = re.split(r"\s+", rest.strip(), 1)
        if len(parts) < 2:
            raise _fail(ln, f"{cmd} must have two arguments")
        return [(parts[0], parts[1])]
    out = []
    for w in words:
        if "=" not in w:
            raise _fail(ln, f'Syntax error - can\'t find = in "{w}". Must be of the form: name=value')
        k, _, v = w.partition("=")
        if not k:
            raise _fail(ln, f"{cmd} names can not be blank")
        out.append((k, v))
    return out


def _arg_words(instr):
    """ARG text -> [(raw name, raw default or None)]."""
    out = []
    for w in split_words(instr.args, instr.escape):
        k, eq, v = w.partition("=")
        if not k:
            raise _fail(instr.line, "ARG names can not be blank")
        out.append((k, v if eq else None))
    if not out:
        raise _fail(instr.line, "ARG requires at least one argument")
    return out


# ----------------------------------------------------------- HEALTHCHECK

_UNITS = {"ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3, "ms": 10**6, "s": 10**9,
          "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([a-z\u00b5\u03bc]+)")


def parse_duration(s):
    """Go's time.ParseDuration ("1m30s", "1.5h", "0") -> nanoseconds, or None if invalid."""
    text, sign = s, 1
    if text[:1] in "+-" and text:
        sign, text = (-1 if text[0] == "-" else 1), text[1:]
    if text == "0":
        return 0
    if not text:
        return None
    total, pos = 0, 0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m or (not m.group(1) and not m.group(2)) or m.group(3) not in _UNITS:
            return None
        unit = _UNITS[m.group(3)]
        total += int(m.group(1) or 0) * unit
        if m.group(2):
            total += int(m.group(2)) * unit // 10 ** len(m.group(2))
        pos = m.end()
    return sign * total


def healthcheck(instr):
    """HEALTHCHECK [flags] CMD ... | NONE -> Docker's Healthcheck dict
    (durations in nanoseconds). Not substituted, as in Docker."""
    ln = instr.line
    typ, _, rest = _split1(instr.args.strip()) if instr.args.strip() else ("", "", "")
    typ = typ.upper()
    if not typ:
        raise _fail(ln, "HEALTHCHECK requires at least one argument")
    if typ == "NONE":
        if rest.strip():
            raise _fail(ln, "HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if typ != "CMD":
        raise _fail(ln, f'Unknown type "{typ}" in HEALTHCHECK (try CMD)')
    cmd = json_array(rest)
    test = ["CMD"] + cmd if cmd is not None else ["CMD-SHELL", rest.strip()]
    if len(test) == 1 or test == ["CMD-SHELL", ""]:
        raise _fail(ln, "Missing command after HEALTHCHECK CMD")
    out = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod")):
        value = instr.flags.get(flag, "")
        d = parse_duration(value) if value else 0
        if d is None:
            raise _fail(ln, f'time: invalid duration "{value}"')
        if 0 < d < 10**6 or d < 0:
            raise _fail(ln, f'Interval "{flag}" cannot be less than 1ms')
        if d:
            out[key] = d    # Docker's HealthConfig omits zero durations (omitempty)
    retries = instr.flags.get("retries", "")
    if retries:
        if not re.fullmatch(r"[+-]?[0-9]{1,10}", retries):
            raise _fail(ln, f'strconv.ParseInt: parsing "{retries}": invalid syntax')
        if int(retries) < 1:
            raise _fail(ln, f"--retries must be at least 1 (not {int(retries)})")
        out["Retries"] = int(retries)
    return out


# ------------------------------------------------------------ the lexer

class _Words:
    """Word accumulator: text from an unquoted $VAR is split on blanks,
    quoted or escaped text is not (moby's wordsStruct)."""

    def __init__(self):
        self.words, self.word, self.in_word = [], "", False

    def char(self, c):
        if c.isspace():
            if self.in_word:
                self.words.append(self.word)
            self.word, self.in_word = "", False
        else:
            self.raw(c)

    def raw(self, c):
        self.word += c
        self.in_word = True

    def text(self, s, raw):
        for c in s:
            self.raw(c) if raw else self.char(c)

    def done(self):
        return self.words + ([self.word] if self.in_word else [])


class _Lexer:
    def __init__(self, text, env, escape):
        self.s, self.i, self.env, self.esc, self.depth = text, 0, env, escape, 0

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self):
        c = self.peek()
        self.i += 1 if c else 0
        return c

    def run(self, stop=""):
        """Up to `stop` (consumed) or the end -> (text, words)."""
        result, words = [], _Words()
        while self.peek():
            c = self.peek()
            if stop and c == stop:
                self.next()
                return "".join(result), words.done()
            if c in "'\"$":
                part = self.single() if c == "'" else self.double() if c == '"' else self.dollar()
                words.text(part, raw=c != "$")
                if c != "$" and not part:
                    words.in_word = True   # '' is an empty word, as in the shell
                result.append(part)
                continue
            c = self.next()
            if c == self.esc:
                c = self.next()
                if not c:
                    break
                words.raw(c)
            else:
                words.char(c)
            result.append(c)
        if stop:
            raise errors.BadParameter(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.done()

    def single(self):
        self.next()
        out = []
        while True:
            c = self.next()
            if not c:
                raise errors.BadParameter(
                    "unexpected end of statement while looking for matching single-quote")
            if c == "'":
                return "".join(out)
            out.append(c)

    def double(self):
        self.next()
        out = []
        while True:
            c = self.peek()
            if not c:
                raise errors.BadParameter(
                    "unexpected end of statement while looking for matching double-quote")
            if c == '"':
                self.next()
                return "".join(out)
            if c == "$":
                out.append(self.dollar())
                continue
            c = self.next()
            if c == self.esc:
                if not self.peek():
                    continue
                if self.peek() in ('"', "$", self.esc):
                    c = self.next()
            out.append(c)

    def name(self):
        c = self.peek()
        if c.isdigit():
            start = self.i
            while self.peek().isdigit():
                self.next()
            return self.s[start:self.i]
        if c and c in "@*#?-$!":
            return self.next()
        start = self.i
        while self.peek() and (self.peek().isalnum() or self.peek() == "_"):
            self.next()
        return self.s[start:self.i]

    def lookup(self, name):
        return (self.env[name], True) if name in self.env else ("", False)

    def dollar(self):
        self.next()
        if self.peek() != "{":
            name = self.name()
            return self.lookup(name)[0] if name else "$"
        self.next()
        if not self.peek():
            raise errors.BadParameter("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise errors.BadParameter("syntax error: bad substitution")
        name = self.name()
        c = self.next()
        if c == "}":
            return self.lookup(name)[0]
        colon = c == ":"
        modifier = self.next() if colon else c
        if modifier not in ("-", "+", "?"):
            if not modifier:
                raise errors.BadParameter("syntax error: missing '}'")
            raise errors.BadParameter(f"unsupported modifier ({modifier}) in substitution")
        self.depth += 1
        if self.depth > _MAX_NESTING:
            raise errors.BadParameter("substitution nested too deeply")
        try:
            word = self.run("}")[0]
        except errors.BadParameter:
            if not self.peek():
                raise errors.BadParameter("syntax error: missing '}'") from None
            raise
        self.depth -= 1
        value, is_set = self.lookup(name)
        present = bool(value) if colon else is_set
        if modifier == "-":
            return value if present else word
        if modifier == "+":
            return word if present else ""
        if not present:
            raise errors.BadParameter(
                f"{name}: {word or ('is not allowed to be empty' if is_set else 'is not allowed to be unset')}")
        return value


def _env_map(env):
    """A mapping, or Docker's ["K=V", ...] list (the last one wins)."""
    if env is None:
        return {}
    if isinstance(env, dict):
        return env
    out = {}
    for e in env:
        k, _, v = e.partition("=")
        out[k] = v
    return out


def expand(word, env=None, escape="\\"):
    """One word with quotes, escapes and $VAR / ${VAR...} processed (moby's
    ProcessWord). An unset variable is empty."""
    return _Lexer(word, _env_map(env), escape).run()[0]


def expand_words(text, env=None, escape="\\"):
    """Like expand, but split into words on blanks outside quotes; the value
    of an unquoted variable is split too (moby's ProcessWords)."""
    return _Lexer(text, _env_map(env), escape).run()[1]


# ------------------------------------------------- per-instruction args

def _exposed(word, ln):
    """"80", "53/udp", "8000-8002" -> ["80/tcp", ...] like nat.ParsePortSpecs."""
    port, _, proto = word.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise _fail(ln, f"invalid proto: {proto}")
    m = re.fullmatch(r"([0-9]{1,5})(?:-([0-9]{1,5}))?", port)
    lo, hi = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (0, -1)
    if not m or not 0 < lo <= hi <= 65535:
        raise _fail(ln, f"invalid containerPort: {port}")
    return [f"{p}/{proto}" for p in range(lo, hi + 1)]


def instruction_args(instr, env=None):
    """The arguments of `instr` with Docker's substitution done for the
    instructions Docker substitutes, given the build's `env` (a mapping or
    ["K=V"]). Returns, by instruction:
      ENV, LABEL: [(key, value)];  ARG: [(name, default or None)];
      EXPOSE: ["80/tcp", ...];  ADD, COPY: [src..., dest];  VOLUME: [path...];
      FROM: [image] or [image, "AS", name];  USER, WORKDIR, STOPSIGNAL: [value];
      HEALTHCHECK: [Healthcheck dict];  ONBUILD: [trigger text];
      RUN, CMD, ENTRYPOINT, SHELL, MAINTAINER and unknown instructions: the JSON
      list as is, or [raw text] for the shell form (see command())."""
    env = _env_map(env)
    ln, cmd, esc = instr.line, instr.cmd, instr.escape

    def x(word):
        try:
            return expand(word, env, esc)
        except errors.BadParameter as e:
            raise _fail(ln, str(e)) from None

    if cmd in ("ENV", "LABEL"):
        return [(x(k), x(v)) for k, v in _name_values(instr)]
    if cmd == "ARG":
        return [(x(k), None if v is None else x(v)) for k, v in _arg_words(instr)]
    if cmd == "EXPOSE":
        return [p for w in instr.args.split() for p in _exposed(x(w), ln)]
    if cmd in ("ADD", "COPY", "VOLUME"):
        out = [x(w) for w in _list(instr)]
        if cmd == "VOLUME" and any(not p.strip() for p in out):
            raise _fail(ln, "VOLUME specified can not be an empty string")
        return out
    if cmd == "FROM":
        image, name = _from_words(instr)
        base = x(image)
        if not base:
            raise _fail(ln, f"base name ({image}) should not be blank")
        return [base] if name is None else [base, "AS", name]
    if cmd in ("USER", "WORKDIR", "STOPSIGNAL"):
        return [x(instr.args)]
    if cmd == "HEALTHCHECK":
        return [healthcheck(instr)]
    if cmd == "ONBUILD":
        return [instr.trigger.original]
    return list(instr.args) if instr.json else [instr.args]


def command(instr, shell=("/bin/sh", "-c")):
    """RUN, CMD, ENTRYPOINT's argv: the exec form as is, the shell form
    appended to the stage's SHELL (default /bin/sh -c)."""
    return list(instr.args) if instr.json else list(shell) + [instr.args]


# --------------------------------------------------------------- stages

def global_args(df, build_args=None):
    """The ARGs before the first FROM, with their defaults substituted in
    order and overridden by `build_args` -> {name: value}; an ARG without a
    default and without a build arg is not set."""
    out, build_args = {}, build_args or {}
    for instr in df.instructions:
        if instr.cmd == "FROM":
            break
        if instr.cmd == "ARG":
            for name, default in instruction_args(instr, out):
                if name in build_args:
                    out[name] = build_args[name]
                elif default is not None:
                    out[name] = default
    return out


def stages(df, build_args=None):
    """The build stages in order. FROM lines see only the global ARGs; stage
    names are case-insensitive and unique; only ARG may precede the first FROM."""
    meta = global_args(df, build_args)
    out, names = [], set()
    for instr in df.instructions:
        if instr.cmd == "FROM":
            words = instruction_args(instr, meta)
            name = words[2] if len(words) == 3 else None
            if name is not None:
                if name in names:
                    raise _fail(instr.line, f'duplicate stage name "{name}"')
                names.add(name)
            platform = instr.flags.get("platform")
            if platform is not None:
                try:
                    platform = expand(platform, meta, instr.escape)
                except errors.BadParameter as e:
                    raise _fail(instr.line, str(e)) from None
            out.append(Stage(name, words[0], platform, [], len(out), instr))
        elif out:
            out[-1].instructions.append(instr)
        elif instr.cmd != "ARG":
            raise _fail(instr.line, "no build stage in current context")
    if not out:
        raise errors.BadParameter("Dockerfile parse error: no build stage in current context")
    return out


def stage_by_name(all_stages, ref):
    """`COPY --from=ref` or `target=ref`: a stage name (any case) or index, else None."""
    ref = ref.lower()
    for s in all_stages:
        if s.name == ref:
            return s
    if ref.isdigit() and int(ref) < len(all_stages):
        return all_stages[int(ref)]
    return None
