"""Which commands the project's own code runs by name, found by reading it, and which commands the
machine is declared to provide (tools/system/packages.txt and machine.txt).

"By name" means looked up on PATH: `subprocess.run(["ip", ...])`, `shutil.which("ipset")`, a line
`iptables-save | grep ...` in a script. A command run by its path (the tools cache's kubectl,
the virtualenv's python) is not looked up and needs no declaration. Commands that run inside an
image (images/*/ scripts, `sh -c` given to a container) come from the image, not from this
machine, and are not read here.

The reading is deliberately simple and errs towards finding too much: a word it takes for a
command that is not one fails the test that uses it, and the fix is a word in SHELL_WORDS below,
never a silent pass.
"""

from __future__ import annotations

import ast
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = ROOT / "tools" / "system"

# Python calls whose first argument is a command line (a list) or a command name.
ARGV_CALLS = {"run", "Popen", "check_output", "check_call", "call", "create_subprocess_exec"}
EXEC_CALLS = {"execvp", "execlp", "execvpe", "execlpe"}
# Commands that run the rest of their arguments as another command: how many operands come
# before that command, and which of their options take a separate value.
WRAPPERS = {"env": (0, set()), "nsenter": (0, set()), "unshare": (0, {"--propagation"}), "chroot": (1, set()),
            "timeout": (1, set()), "setsid": (0, set())}

# Shell words that are not commands on PATH: keywords, builtins, and the shell-script shapes the
# reader below takes for a command's start (a case pattern's word).
SHELL_WORDS = frozenset("""
    if then else elif fi case esac for select while until do done in function time coproc
    break continue return exit export readonly local declare typeset unset shift set trap eval
    exec source . cd pwd echo printf read mapfile readarray test [ [[ ]] true false command
    builtin type hash wait kill jobs disown umask ulimit getopts let alias unalias shopt
""".split())


@dataclass(frozen=True)
class Call:
    command: str
    where: str  # path:line


@dataclass(frozen=True)
class Provided:
    command: str
    package: str  # the Debian package, or "machine" for machine.txt


def declared() -> dict[str, Provided]:
    """Every command the system lists provide, by name (lib:/pkg: tokens are not commands)."""
    found: dict[str, Provided] = {}
    for entry in package_entries():
        for token in entry.provides:
            if ":" not in token:
                found[token] = Provided(token, entry.package)
    for line in _lines(SYSTEM / "machine.txt"):
        found[line.split()[0]] = Provided(line.split()[0], "machine")
    return found


@dataclass(frozen=True)
class PackageEntry:
    package: str
    provides: tuple[str, ...]
    why: str


def package_entries() -> list[PackageEntry]:
    entries = []
    for line in _lines(SYSTEM / "packages.txt"):
        words, _, why = line.partition("--")
        package, *provides = words.split()
        entries.append(PackageEntry(package, tuple(provides), why.strip()))
    return entries


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / name for name in out.split("\0") if name and (ROOT / name).is_file()]


def called() -> list[Call]:
    """Every command the tracked Python, shell scripts and Makefile run by name."""
    calls: list[Call] = []
    for path in tracked_files():
        relative = path.relative_to(ROOT)
        if relative.parts[0] == "images" and path.suffix != ".py":
            continue  # runs inside an image
        if path.suffix == ".py":
            calls += python_calls(path)
        elif path.name == "Makefile":
            calls += makefile_calls(path)
        elif _is_shell(path):
            calls += shell_calls(path.read_text(), str(relative))
    return calls


def _is_shell(path: Path) -> bool:
    if path.suffix == ".sh":
        return True
    with path.open("rb") as f:
        first = f.readline(200)
    return first.startswith(b"#!") and re.search(rb"\b(ba)?sh\b", first) is not None


# --- Python ---------------------------------------------------------------------------------


def python_calls(path: Path) -> list[Call]:
    tree = ast.parse(path.read_text(), filename=str(path))
    relative = path.relative_to(ROOT)
    strings = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
               for target in node.targets if isinstance(target, ast.Name)
               and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}
    # A command line built in a variable first (`argv = ["mmdebstrap", ...]`, then `run(argv)`);
    # by name across the module, which can only find too much.
    lists: dict[str, list[ast.List | ast.Tuple]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, (ast.List, ast.Tuple)):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    lists.setdefault(target.id, []).append(node.value)
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        where = f"{relative}:{node.lineno}"
        first = node.args[0]
        if function == "which" and isinstance(first, ast.Constant) and isinstance(first.value, str):
            calls.append(Call(first.value, where))
        elif function in EXEC_CALLS and isinstance(first, ast.Constant) and isinstance(first.value, str):
            calls.append(Call(first.value, where))
        elif function in ARGV_CALLS | EXEC_CALLS:
            argvs = lists.get(first.id, []) if isinstance(first, ast.Name) else [first]
            if function == "create_subprocess_exec":
                argvs = [ast.List(elts=list(node.args))]
            for argv in argvs:
                if isinstance(argv, (ast.List, ast.Tuple)):
                    calls += _argv_calls(argv.elts, strings, where)
    return calls


def _argv_calls(elements: list[ast.expr], strings: dict[str, str], where: str) -> list[Call]:
    words = [e.value if isinstance(e, ast.Constant) and isinstance(e.value, str)
             else strings.get(e.id) if isinstance(e, ast.Name) else None for e in elements]
    if not words or words[0] is None or "/" in words[0]:
        return []
    calls = [Call(words[0], where)]
    if words[0] in ("bash", "sh") and len(elements) > 2 and words[1] == "-c":
        script = words[2] if words[2] is not None else strings.get(getattr(elements[2], "id", ""), None)
        if script is not None:
            calls += shell_calls(script, where)
    elif words[0] in WRAPPERS:
        calls += _argv_calls(_wrapped(words[0], elements, words), strings, where)
    return calls


def _wrapped(wrapper: str, elements: list[ast.expr], words: list[str | None]) -> list[ast.expr]:
    """The command line a wrapper runs: after `--`, or after its options and operands."""
    if "--" in words:
        return elements[words.index("--") + 1:]
    operands, valued = WRAPPERS[wrapper]
    i = 1
    while i < len(words) and words[i] is not None and (words[i].startswith("-") or "=" in words[i]):
        i += 2 if words[i] in valued else 1
    return elements[i + operands:]


# --- shell ---------------------------------------------------------------------------------

_HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")
_SEPARATORS = re.compile(r"&&|\|\||[;|&(){}!\n]|\b(?:then|do|else|if|elif|while|until|time)\b")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
_ARRAY_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=\(")
_CASE_ARM = re.compile(r"^\s*[^\s()]+(\s*\|\s*[^\s()]+)*\)", re.MULTILINE)
_FUNCTION = re.compile(r"^\s*(?:function\s+)?([A-Za-z_][\w-]*)\s*\(\)", re.MULTILINE)
# What a quoted string, a ${...} expansion or a command substitution leaves in its place: a
# word that is never taken for a command.
_WORD = '"_"'


def shell_calls(text: str, where: str) -> list[Call]:
    """The commands a shell script runs by name: the first word of each simple command, at the
    top level and inside $(...) and backticks, strings and here-documents being data."""
    functions = set(_FUNCTION.findall(text))
    calls = []
    for code, line in _ShellReader(_without_heredocs(text)).fragments():
        code = _CASE_ARM.sub("", code)
        offset = 0
        for segment in _SEPARATORS.split(code):
            command = _first_command(segment)
            if command and command not in functions:
                number = line + code.count("\n", 0, code.find(segment, offset))
                calls.append(Call(command, f"{where}:{number}"))
            offset += len(segment)
    return calls


def _without_heredocs(text: str) -> str:
    """The here-documents' bodies blanked (lines kept, so line numbers stay right)."""
    lines, end = [], None
    for raw in text.splitlines():
        if end is not None:
            lines.append("")
            if raw.strip() == end:
                end = None
            continue
        lines.append(raw)
        if match := _HEREDOC.search(re.sub(r"'[^']*'", "", raw)):
            end = match.group(1)
    return "\n".join(lines)


class _ShellReader:
    """Splits shell text into code fragments: the top level, and the inside of each command
    substitution, each with its quoted strings, expansions and comments replaced by a word."""

    def __init__(self, text: str):
        self.text = text.replace("\\\n", " \n")  # a continued line stays one command
        self.found: list[tuple[str, int]] = []

    def fragments(self) -> list[tuple[str, int]]:
        code, _ = self._code(0, closing=None)
        self.found.insert(0, (code, 1))
        return self.found

    def _line(self, i: int) -> int:
        return self.text.count("\n", 0, i) + 1

    def _code(self, i: int, closing: str | None) -> tuple[str, int]:
        """Code from i up to the unmatched `closing`; returns it and the index after `closing`."""
        text, out, depth = self.text, [], 0
        while i < len(text):
            c = text[i]
            if closing == ")" and c == ")" and depth == 0:
                return "".join(out), i + 1
            if closing == "`" and c == "`":
                return "".join(out), i + 1
            if c == "\\":
                out.append(_WORD)
                i += 2
            elif c == "'":
                end = text.find("'", i + 1)
                i = len(text) if end < 0 else end + 1
                out.append(_WORD)
            elif c == '"':
                i = self._double_quoted(i + 1)
                out.append(_WORD)
            elif text.startswith("${", i):
                i = self._braced(i + 2)
                out.append(_WORD)
            elif text.startswith("$((", i):
                _, i = self._code(i + 3, closing=")")  # arithmetic: its words are variables
                i += 1
                out.append(_WORD)
            elif text.startswith("$(", i):
                start = i + 2
                inner, i = self._code(start, closing=")")
                self.found.append((inner, self._line(start)))
                out.append(_WORD)
            elif c == "`" and closing != "`":
                inner, i = self._code(i + 1, closing="`")
                self.found.append((inner, self._line(i)))
                out.append(_WORD)
            elif text.startswith("((", i) and (end := text.find("))", i)) >= 0:
                i = end + 2  # arithmetic
                out.append(_WORD)
            elif c == "#" and (i == 0 or text[i - 1] in " \t\n;"):
                end = text.find("\n", i)
                i = len(text) if end < 0 else end
            elif (match := _ARRAY_ASSIGNMENT.match(text, i)) and (i == 0 or not text[i - 1].isalnum()):
                _, i = self._code(match.end(), closing=")")  # a list of words, not commands
                out.append(_WORD)
            else:
                depth += c == "("
                depth -= c == ")"
                out.append(c)
                i += 1
        return "".join(out), i

    def _double_quoted(self, i: int) -> int:
        text = self.text
        while i < len(text) and text[i] != '"':
            if text[i] == "\\":
                i += 2
            elif text.startswith("$(", i):
                start = i + 2
                inner, i = self._code(start, closing=")")
                self.found.append((inner, self._line(start)))
            elif text.startswith("${", i):
                i = self._braced(i + 2)
            elif text[i] == "`":
                inner, i = self._code(i + 1, closing="`")
                self.found.append((inner, self._line(i)))
            else:
                i += 1
        return i + 1

    def _braced(self, i: int) -> int:
        """Past the } that closes a ${...} (whose default may hold strings and substitutions)."""
        text, depth = self.text, 0
        while i < len(text):
            if text[i] == '"':
                i = self._double_quoted(i + 1)
                continue
            if text.startswith("$(", i):
                start = i + 2
                inner, i = self._code(start, closing=")")
                self.found.append((inner, self._line(start)))
                continue
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                if depth == 0:
                    return i + 1
                depth -= 1
            i += 1
        return i


def _first_command(segment: str) -> str | None:
    words = segment.split()
    while words and (_ASSIGNMENT.match(words[0]) or words[0] in ("exec", "command", "builtin", "nohup", "env")):
        if words[0] == "command" and len(words) > 1 and words[1] in ("-v", "-V"):
            return None  # a lookup, not a run
        words = words[1:]
    if not words:
        return None
    word = words[0]
    if word in SHELL_WORDS or not re.match(r"^[A-Za-z][\w.+-]*$", word):
        return None  # a variable, a quoted word, a path, a redirection, a closing keyword
    return word


# --- Makefile -------------------------------------------------------------------------------


def makefile_calls(path: Path) -> list[Call]:
    recipe_lines, continued = [], False  # continued: the line goes on a variable or rule line
    for line in path.read_text().splitlines():
        if line.startswith("\t") and not continued:
            recipe_lines.append(line[1:].lstrip("@-+ "))
        else:
            recipe_lines.append("")
            continued = line.endswith("\\")
            continue
        continued = False
    # Make's own references ($(PY), $(if ...)) become a quoted word, innermost first; then $$ is
    # the shell's $, as make passes it on.
    text = "\n".join(recipe_lines)
    while (expanded := re.sub(r"(?<!\$)\$\([^()$]*\)", '"MAKEVAR"', text)) != text:
        text = expanded
    text = text.replace("$$", "$")
    return shell_calls(text, str(path.relative_to(ROOT)))
