""".dockerignore, read and matched as Docker does.

The rules are moby's: patternmatcher/ignorefile.ReadAll turns the file's
lines into patterns, patternmatcher.New compiles them, and
MatchesOrParentMatches decides a path (a path is excluded when it or one
of its parent directories matches; later lines win, `!` lines re-include).
The walk that skips a whole excluded directory is archive.TarWithOptions'.

Map:
  read_lines(text)                 -> the patterns of a .dockerignore body
  Matcher(lines, keep=())          .excluded(path, is_dir) / .can_skip_dir(path)
  go_match(pattern, name)          Go's filepath.Match (also used for COPY globs)

Docker's client re-includes `.dockerignore` and the Dockerfile when the
file would exclude them (cli TrimBuildFilesFromExcludes appends `!name`):
pass them as `keep`. The daemon then deletes them from the context after
reading the Dockerfile (remotecontext.removeDockerfile), so `COPY . /`
does not copy an ignored Dockerfile: that is the builder's step.
"""

import posixpath
import re

from pyd import errors

_EXACT, _PREFIX, _SUFFIX, _REGEXP = "exact", "prefix", "suffix", "regexp"
_ESCAPE = set(".+()|{}$")      # regexp specials with no meaning to filepath.Match


def clean(path):
    """Go's filepath.Clean on a slash path ('' -> '.')."""
    if not path:
        return "."
    out = posixpath.normpath(path)
    if out.startswith("//"):            # POSIX keeps a leading '//', Go does not
        out = "/" + out.lstrip("/")
    return out


def read_lines(text):
    """Patterns of a .dockerignore body, as ignorefile.ReadAll makes them:
    a line starting with '#' is a comment (only in column 0), whitespace is
    trimmed, blank lines dropped, each pattern cleaned and a leading '/'
    removed (patterns are relative to the context), keeping a '!' prefix."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    if text.startswith("\ufeff"):           # a UTF-8 BOM on the first line
        text = text[1:]
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        out.append("!" + pattern if invert else pattern)
    return out


class _Pattern:
    __slots__ = ("text", "exclusion", "kind", "regex")

    def __init__(self, text, exclusion):
        self.text, self.exclusion = text, exclusion
        self.kind, self.regex = _compile(text)

    def match(self, path):
        if self.kind == _EXACT:
            return path == self.text
        if self.kind == _PREFIX:
            return path.startswith(self.text[:-2])          # "foo/**" -> "foo/"
        if self.kind == _SUFFIX:
            suffix = self.text[2:]                          # "**/foo" -> "/foo"
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        return self.regex.match(path) is not None


def _compile(pattern):
    """(kind, regex) for one cleaned pattern, as Pattern.compile does: the
    cheap kinds avoid a regexp for literal, 'x/**' and '**/x' patterns."""
    out = ["^"]
    kind = _EXACT
    i, n = 0, len(pattern)
    first = True
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":     # treat "**/" as "**"
                    i += 1
                if i >= n:                          # "**" at the end: anything
                    if kind == _EXACT:
                        kind = _PREFIX
                    else:
                        out.append(".*")
                        kind = _REGEXP
                else:
                    out.append("(.*/)?")            # any number of directories, even none
                    kind = _REGEXP
                if first:
                    kind = _SUFFIX
            else:
                out.append("[^/]*")
                kind = _REGEXP
        elif ch == "?":
            out.append("[^/]")
            kind = _REGEXP
        elif ch in _ESCAPE:
            out.append("\\" + ch)
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
                kind = _REGEXP
            else:
                out.append("\\\\")
        elif ch in "[]":
            out.append(ch)
            kind = _REGEXP
        else:
            out.append(ch)
        first = False
    if kind != _REGEXP:
        return kind, None
    out.append("$")
    try:
        return kind, re.compile("".join(out), re.DOTALL)
    except re.error as e:
        raise errors.BadParameter(f"invalid .dockerignore pattern {pattern!r}: {e}") from e


class Matcher:
    """The compiled patterns of a .dockerignore (lines as read_lines gives
    them, or raw lines: each is trimmed and cleaned again, as New does).
    `keep`: context paths Docker still sends whatever the patterns say
    (.dockerignore and the Dockerfile)."""

    def __init__(self, lines=(), keep=()):
        self.patterns = []
        for line in lines:
            p = line.strip()
            if not p:
                continue
            p = clean(p)
            exclusion = p.startswith("!")
            if exclusion:
                if len(p) == 1:
                    raise errors.BadParameter('illegal exclusion pattern: "!"')
                p = p[1:]
            go_match(p, ".")            # a syntax error is reported now, as New does
            self.patterns.append(_Pattern(p, exclusion))
        for name in keep:
            name = _rel(name)
            if self._matches(name):
                self.patterns.append(_Pattern(name, True))

    @classmethod
    def from_text(cls, text, keep=()):
        return cls(read_lines(text), keep)

    @property
    def exclusions(self):
        return any(p.exclusion for p in self.patterns)

    def _matches(self, path):
        parent = posixpath.dirname(path) or "."
        dirs = parent.split("/")
        matched = False
        for pattern in self.patterns:
            # an inclusion cannot change an already excluded path, nor an exception a kept one
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit and parent != ".":
                hit = any(pattern.match("/".join(dirs[:i + 1])) for i in range(len(dirs)))
            if hit:
                matched = not pattern.exclusion
        return matched

    def excluded(self, path, is_dir=False):
        """Whether the context path `path` (relative; a leading '/' is
        ignored) is left out of the context. `is_dir` does not change the
        answer (Docker matches names only); it is there for callers'
        clarity and for symmetry with can_skip_dir."""
        path = _rel(path)
        if path == ".":
            return False
        return self._matches(path)

    def can_skip_dir(self, path):
        """Whether a walk may leave out the excluded directory `path` and
        everything below it: no exception pattern names a path under it
        (moby's test: the pattern plus '/' starts with 'dir/'). Like moby,
        an exception such as '!**/x' does not stop the skip."""
        path = _rel(path)
        if not self.excluded(path, True):
            return False
        prefix = path + "/"
        return not any(p.exclusion and (p.text + "/").startswith(prefix) for p in self.patterns)


def _rel(path):
    path = clean(path).lstrip("/")
    return path or "."


# --------------------------------------------------------------------------
# Go's path/filepath.Match
# --------------------------------------------------------------------------

def go_match(pattern, name):
    """Go's filepath.Match on slash paths: '*' is any run of non-'/', '?'
    one non-'/', '[...]' a class with ranges and '^' negation, '\\' escapes
    the next character. A malformed pattern raises BadParameter (Go's
    ErrBadPattern), even when the name already failed to match."""
    return _go_regex(pattern).match(name) is not None


_go_cache = {}


def _go_regex(pattern):
    rx = _go_cache.get(pattern)
    if rx is None:
        rx = re.compile(_go_translate(pattern) + r"\Z", re.DOTALL)
        if len(_go_cache) < 1024:
            _go_cache[pattern] = rx
    return rx


def _go_translate(pattern):
    bad = errors.BadParameter(f"syntax error in pattern {pattern!r}")
    out = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i >= n:
                raise bad
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            negate = i < n and pattern[i] == "^"
            if negate:
                i += 1
            ranges = []
            while True:
                if i >= n:
                    raise bad
                if pattern[i] == "]" and ranges:
                    i += 1
                    break
                lo, i = _class_char(pattern, i, bad)
                hi = lo
                if i < n and pattern[i] == "-":
                    hi, i = _class_char(pattern, i + 1, bad)
                    if hi < lo:
                        raise bad
                ranges.append(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}")
            out.append(("[^" if negate else "[") + "".join(ranges) + "]")
        else:
            out.append(re.escape(ch))
    return "".join(out)


def _class_char(pattern, i, bad):
    """One character of a class (Go's getEsc): '-' and ']' must be escaped,
    and a class may not end inside."""
    if i >= len(pattern) or pattern[i] in "-]":
        raise bad
    ch = pattern[i]
    if ch == "\\":
        i += 1
        if i >= len(pattern):
            raise bad
        ch = pattern[i]
    return ch, i + 1
