"""pyd.engine.dockerignore: .dockerignore read and matched as moby's
patternmatcher does, with the examples of Docker's documentation."""

import pytest

from pyd import errors
from pyd.engine import dockerignore
from pyd.engine.dockerignore import Matcher, go_match, read_lines


def test_read_lines_comments_blanks_whitespace_and_leading_slash():
    text = ("\ufeff# a comment\n"
            "\n"
            "   \n"
            "  *.tmp  \n"
            " # not a comment: '#' counts only in column 0\n"
            "/abs/./x//y/\n"
            "! /keep \n"
            "a/../b\n")
    assert read_lines(text) == ["*.tmp", "# not a comment: '#' counts only in column 0",
                                "abs/x/y", "!keep", "b"]


# (patterns, path, excluded) -- from the "Dockerfile reference: .dockerignore
# file" page and moby's patternmatcher tests.
CASES = [
    (["*/temp*"], "somedir/temporary.txt", True),
    (["*/temp*"], "somedir/temp", True),
    (["*/temp*"], "temp", False),
    (["*/temp*"], "a/b/temp", False),
    (["*/*/temp*"], "somedir/subdir/temporary.txt", True),
    (["*/*/temp*"], "somedir/temporary.txt", False),
    (["temp?"], "tempa", True),
    (["temp?"], "tempab", False),
    (["temp?"], "temp", False),
    (["temp?"], "temp/", False),
    (["**/*.go"], "main.go", True),
    (["**/*.go"], "a/b/c/main.go", True),
    (["**/*.go"], "a/b/main.goo", False),
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md"], "CHANGES.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-public.md", False),
    (["*.md", "README-secret.md", "!README*.md"], "README-secret.md", False),
    # a directory that matches excludes what it holds
    (["docs"], "docs/a/b.txt", True),
    (["docs", "!docs/keep.txt"], "docs/keep.txt", False),
    (["docs", "!docs/keep.txt"], "docs/other.txt", True),
    (["docs/"], "docs/x", True),
    # "**" forms: prefix, suffix, middle, alone
    (["a/**"], "a/b/c", True),
    (["a/**"], "ab", False),
    (["**/foo"], "foo", True),
    (["**/foo"], "x/y/foo", True),
    (["**/foo"], "x/yfoo", False),
    (["a/**/b"], "a/b", True),
    (["a/**/b"], "a/x/y/b", True),
    (["**"], "anything/at/all", True),
    # character classes, negation with ^, escapes, regexp specials kept literal
    (["file[0-9].txt"], "file7.txt", True),
    (["file[0-9].txt"], "filex.txt", False),
    (["file[^0-9].txt"], "filex.txt", True),
    (["file[^0-9].txt"], "file7.txt", False),
    (["a\\*b"], "a*b", True),
    (["a\\*b"], "axb", False),
    (["a+b.(c)"], "a+b.(c)", True),
    (["a.b"], "axb", False),
    (["*"], ".dockerignore", True),
    ([], "x", False),
]


@pytest.mark.parametrize("patterns,path,excluded", CASES)
def test_excluded(patterns, path, excluded):
    assert Matcher(patterns).excluded(path) is excluded


def test_a_leading_slash_is_dropped_by_the_reader_not_by_the_matcher():
    # as moby: ignorefile.ReadAll strips it, patternmatcher.New does not
    assert Matcher.from_text("/docs\n").excluded("docs/x")
    assert not Matcher(["/docs"]).excluded("docs/x")


def test_the_context_root_is_never_excluded():
    assert Matcher(["*", "**"]).excluded(".") is False
    assert Matcher(["*"]).excluded("/") is False


def test_paths_are_cleaned_like_moby_cleans_them():
    m = Matcher(["a/b"])
    assert m.excluded("/a/b")
    assert m.excluded("./a//b/")
    assert m.excluded("a/c/../b/x")


def test_later_lines_win():
    m = Matcher.from_text("!x\n*\n")
    assert m.excluded("x")
    m = Matcher.from_text("*\n!x\n")
    assert not m.excluded("x")


def test_keep_re_includes_dockerignore_and_dockerfile_only_when_excluded():
    m = Matcher(["*"], keep=[".dockerignore", "sub/Dockerfile"])
    assert not m.excluded(".dockerignore")
    assert not m.excluded("sub/Dockerfile")
    assert m.excluded("sub/other")
    plain = Matcher(["*.txt"], keep=[".dockerignore", "Dockerfile"])
    assert not plain.exclusions        # nothing was excluded, nothing appended


@pytest.mark.parametrize("patterns,directory,skip", [
    (["build"], "build", True),                            # no exceptions at all
    (["build", "!build/keep"], "build", False),            # an exception names a path below
    (["build", "!build"], "build", False),                 # not excluded
    (["build", "!other/keep"], "build", True),
    (["build", "!buildx/keep"], "build", True),            # 'buildx/' is not under 'build/'
    (["build", "!**/keep"], "build", True),                # moby's prefix test misses wildcards
    (["src"], "lib", False),                               # not excluded, so walked
])
def test_can_skip_dir(patterns, directory, skip):
    assert Matcher(patterns).can_skip_dir(directory) is skip


@pytest.mark.parametrize("bad", ["!", "[", "a[", "[]", "x[b-a]", "\\"])
def test_bad_patterns_are_bad_parameter(bad):
    with pytest.raises(errors.BadParameter):
        Matcher([bad])


@pytest.mark.parametrize("pattern,name,ok", [
    ("*", "abc", True),
    ("*", "a/b", False),
    ("*/b", "a/b", True),
    ("a?c", "abc", True),
    ("a?c", "a/c", False),
    ("[a-c]x", "bx", True),
    ("[^a-c]x", "dx", True),
    ("[^a-c]x", "bx", False),
    ("[\\]]", "]", True),
    ("\\[x\\]", "[x]", True),
    ("*.txt", ".txt", True),
    ("a.txt", "a.txt", True),
    ("a.txt", "aatxt", False),
])
def test_go_match(pattern, name, ok):
    assert go_match(pattern, name) is ok


def test_go_match_reports_a_bad_pattern_even_without_a_match():
    with pytest.raises(errors.BadParameter):
        go_match("x[", "y")
    assert dockerignore.clean("//a//b/../c/") == "/a/c"
