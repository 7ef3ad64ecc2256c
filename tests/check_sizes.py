#!/usr/bin/env python3
"""Size check of floodgate's C++ sources (issue 12): no file over 600 lines, no function over 60.

Prints the largest files and the longest functions under service/, then every one over its
limit, and exits 1 when there is any. A function's length is the lines of its body, from the
line of its opening brace to the line of its closing brace; a lambda or local class counts as
part of the function that holds it. Plain Python 3 (standard library only), so CI runs it before
any virtual environment exists:

    python3 tests/check_sizes.py [--root service] [--max-file-lines 600] [--max-function-lines 60]

The scanner is not a C++ parser. It blanks out comments, string and character literals (raw
strings too) and preprocessor lines, then matches braces, telling function bodies from
namespaces, classes, enums and brace initializers by what precedes each brace. Its tricky cases
are pinned in tests/check_sizes_test.py.
"""

from __future__ import annotations

import argparse
import bisect
import os
import re
import sys
from dataclasses import dataclass

SOURCE_SUFFIXES = (".cpp", ".h")


@dataclass(frozen=True)
class Function:
    name: str
    first_line: int  # the line of the opening brace (1-based)
    last_line: int  # the line of the closing brace

    @property
    def lines(self) -> int:
        return self.last_line - self.first_line + 1


# --- Blanking comments, literals and preprocessor lines -------------------------------------


def _blank(text: str) -> str:
    """Every character but a newline becomes a space, so positions and line numbers stay put."""
    return re.sub(r"[^\n]", " ", text)


_RAW_PREFIX = re.compile(r'(?:u8|[uUL])?R"([^()\\\s]{0,16})\(')


def strip_code(src: str) -> str:
    """The source with comments, the insides of string and character literals, and preprocessor
    directives replaced by spaces (quotes kept, newlines kept)."""
    out: list[str] = []
    i, n = 0, len(src)
    at_line_start = True  # only white space so far on this line
    while i < n:
        c = src[i]
        if c == "\n":
            out.append(c)
            i += 1
            at_line_start = True
            continue
        if at_line_start and c == "#":
            end = i
            while True:  # a directive runs on while its lines end in a backslash
                nl = src.find("\n", end)
                if nl == -1:
                    nl = n
                if nl > i and src[nl - 1] == "\\" and nl < n:
                    end = nl + 1
                    continue
                break
            out.append(_blank(src[i:nl]))
            i = nl
            continue
        if not c.isspace():
            at_line_start = False
        if src.startswith("//", i):
            nl = src.find("\n", i)
            nl = n if nl == -1 else nl
            out.append(_blank(src[i:nl]))
            i = nl
            continue
        if src.startswith("/*", i):
            end = src.find("*/", i + 2)
            end = n if end == -1 else end + 2
            out.append(_blank(src[i:end]))
            i = end
            continue
        raw = _RAW_PREFIX.match(src, i)
        if raw and (i == 0 or not _is_ident_char(src[i - 1])):
            close = src.find(")" + raw.group(1) + '"', raw.end())
            close = n if close == -1 else close + len(raw.group(1)) + 2
            out.append('"' + _blank(src[i + 1 : close - 1]) + '"')
            i = close
            continue
        if c == '"' or (c == "'" and not _is_digit_separator(src, i)):
            j = i + 1
            while j < n and src[j] != c and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            j = min(j, n - 1)
            out.append(c + _blank(src[i + 1 : j]) + src[j])
            i = j + 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _is_ident_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def _is_digit_separator(src: str, i: int) -> bool:
    """True for the ' in 1'000'000: it follows a number (not a prefix such as u8 or L)."""
    j = i
    while j > 0 and (_is_ident_char(src[j - 1]) or src[j - 1] in ".'"):
        j -= 1
    return j < i and src[j].isdigit()


# --- Finding function bodies ----------------------------------------------------------------

_SCOPE_KEYWORDS = re.compile(r"^(?:inline\s+)?(?:namespace|extern)\b")
_TYPE_KEYWORDS = re.compile(r"^(?:typedef\s+)?(?:class|struct|union|enum)\b")
_NOT_A_NAME = {
    "noexcept", "throw", "alignas", "decltype", "requires", "__attribute__", "sizeof",
    "if", "for", "while", "switch", "catch", "return",
}
# What may follow a function's parameter list before its body.
_QUALIFIERS = re.compile(
    r"(?:\s*(?:const|volatile|override|final|mutable|noexcept|try|&&?"
    r"|->\s*[\w:<>,&*\s]+|requires\s+[\w:<>,&*\s]+))*\s*"
)


def _line_of(pos: int, line_starts: list[int]) -> int:
    return bisect.bisect_right(line_starts, pos)


def _matching_brace(code: str, open_pos: int, end: int) -> int:
    depth = 0
    for k in range(open_pos, end):
        if code[k] == "{":
            depth += 1
        elif code[k] == "}":
            depth -= 1
            if depth == 0:
                return k
    return end - 1


def _top_level_paren_groups(head: str) -> list[tuple[int, int]]:
    groups, depth, start = [], 0, -1
    for k, c in enumerate(head):
        if c == "(":
            if depth == 0:
                start = k
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                groups.append((start, k))
    return groups


def _init_list_colon(head: str) -> int:
    """Where a constructor's initializer list starts (a lone ':' after the parameter list, at
    paren depth 0), or -1."""
    depth = 0
    seen_params = False
    for k, c in enumerate(head):
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
            if depth == 0 and c == ")":
                seen_params = True
        elif c == ":" and depth == 0 and seen_params:
            if head[k - 1 : k] != ":" and head[k + 1 : k + 2] != ":":
                return k
    return -1


def _without_template_header(head: str) -> str:
    """`head` without a leading `template <...>` (whose `class T` is no class)."""
    m = re.match(r"\s*template\s*<", head)
    if not m:
        return head.strip()
    depth, k = 1, m.end()
    while k < len(head) and depth:
        depth += {"<": 1, ">": -1}.get(head[k], 0)
        k += 1
    return _without_template_header(head[k:])


def _name_before(text: str) -> str | None:
    m = re.search(
        r"((?:[A-Za-z_]\w*::)*(?:operator\s*\S+?|~?[A-Za-z_]\w*(?:<[\w:,\s<>]*>)?))\s*$", text
    )
    if not m:
        return None
    return re.sub(r"\s+", "", m.group(1))


def _declaration(head: str) -> str:
    """`head` without leading access specifiers and template header."""
    return _without_template_header(
        re.sub(r"^\s*(?:(?:public|private|protected)\s*:\s*)+", "", head)
    )


def _function_name(head: str) -> str | None:
    """The function's name when `head` (the text from the previous ';', '{' or '}' up to a
    '{') introduces a function body (or a lambda stored in a variable); None otherwise."""
    h = _declaration(head)
    if "(" not in h:
        return None
    lam = re.match(r"(?:[\w:<>,*&\s]+\s)?(\w+)\s*=\s*\[[^\]]*\]\s*\(", h)
    if lam and _QUALIFIERS.fullmatch(h[_top_level_paren_groups(h)[-1][1] + 1 :]):
        return lam.group(1)
    colon = _init_list_colon(h)
    params_part = h if colon == -1 else h[:colon]
    groups = _top_level_paren_groups(params_part)
    if not groups:
        return None
    # Initialisers (`auto x = f(...) {`, `T v = {...}`) are not functions.
    if re.search(r"(?<![=!<>+\-*/%&|^])=(?!=)", params_part[: groups[0][0]]):
        return None
    if colon == -1 and not _QUALIFIERS.fullmatch(h[groups[-1][1] + 1 :]):
        return None
    for start, _ in reversed(groups):
        name = _name_before(params_part[:start])
        if name is not None and name.split("::")[-1] not in _NOT_A_NAME:
            return name
    return None


def find_functions(src: str) -> list[Function]:
    """Function bodies in a C++ source, outermost only, in order."""
    code = strip_code(src)
    line_starts = [0] + [m.end() for m in re.finditer(r"\n", code)]
    found: list[Function] = []
    _scan_scope(code, 0, len(code), line_starts, found)
    return found


def _scan_scope(code: str, start: int, end: int, line_starts: list[int], found: list) -> None:
    """Scans a declaration scope (the file, a namespace, a class body) from `start` to `end`."""
    head_start = start
    i = start
    while i < end:
        c = code[i]
        if c in ";}":
            head_start = i + 1
        elif c == "{":
            head = code[head_start:i]
            stripped = head.strip()
            prev = stripped[-1:]
            close = _matching_brace(code, i, end)
            if _init_list_colon(stripped) != -1 and (_is_ident_char(prev) or prev == ">"):
                i = close + 1  # a member's brace initializer in a constructor's init list
                continue
            is_type = _TYPE_KEYWORDS.match(_declaration(head)) and "=" not in stripped
            name = None if is_type else _function_name(head)
            if name is not None:
                found.append(Function(name, _line_of(i, line_starts), _line_of(close, line_starts)))
            elif is_type or _SCOPE_KEYWORDS.match(stripped):
                _scan_scope(code, i + 1, close, line_starts, found)
            head_start = i = close + 1
            continue
        i += 1


# --- The check ------------------------------------------------------------------------------


def source_files(root: str) -> list[str]:
    paths = []
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(SOURCE_SUFFIXES):
                paths.append(os.path.join(folder, name))
    return sorted(paths)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="service", help="folder to scan (default: service)")
    parser.add_argument("--max-file-lines", type=int, default=600)
    parser.add_argument("--max-function-lines", type=int, default=60)
    parser.add_argument("--top", type=int, default=10, help="how many of each to list")
    args = parser.parse_args(argv)

    files = []  # (lines, path)
    functions = []  # (Function, path)
    for path in source_files(args.root):
        with open(path, encoding="utf-8", errors="replace") as f:
            src = f.read()
        files.append((src.count("\n") + (0 if src.endswith("\n") or not src else 1), path))
        functions.extend((fn, path) for fn in find_functions(src))
    if not files:
        print(f"check_sizes: no .cpp or .h files under {args.root}", file=sys.stderr)
        return 2

    files.sort(key=lambda x: (-x[0], x[1]))
    functions.sort(key=lambda x: (-x[0].lines, x[1], x[0].first_line))
    print(f"Largest files under {args.root}/ (limit {args.max_file_lines} lines):")
    for lines, path in files[: args.top]:
        print(f"  {lines:6d}  {path}")
    print(f"Longest functions (body lines; limit {args.max_function_lines}):")
    for fn, path in functions[: args.top]:
        print(f"  {fn.lines:6d}  {path}:{fn.first_line}  {fn.name}")

    big_files = [(n, p) for n, p in files if n > args.max_file_lines]
    long_functions = [(fn, p) for fn, p in functions if fn.lines > args.max_function_lines]
    for lines, path in big_files:
        print(f"FAIL file {path}: {lines} lines (> {args.max_file_lines})")
    for fn, path in long_functions:
        print(f"FAIL function {fn.name} at {path}:{fn.first_line}: {fn.lines} lines "
              f"(> {args.max_function_lines})")
    print(f"{len(files)} files, {len(functions)} functions; {len(big_files)} files and "
          f"{len(long_functions)} functions over the limits")
    return 1 if big_files or long_functions else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
