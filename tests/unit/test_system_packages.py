"""Every command the project runs by name is declared where tools/system/setup.sh can install it
(tools/system/packages.txt) or where the machine is said to bring it (machine.txt), and the
reader that finds those commands finds them (tests/commands_called.py)."""

from __future__ import annotations

import ast
import subprocess
import textwrap
from pathlib import Path

import pytest

import commands_called
from commands_called import ROOT, called, declared, package_entries, python_calls, shell_calls

PREFLIGHT = ROOT / "cluster" / "localcluster" / "preflight.py"


def test_every_command_run_by_name_is_declared():
    known = declared()
    undeclared = sorted({f"{call.command} ({call.where})" for call in called() if call.command not in known})
    assert not undeclared, ("commands run by name that tools/system/packages.txt (or machine.txt) does not "
                            "declare; add each to the line of the Debian package that provides it: "
                            + ", ".join(undeclared))


def test_the_node_programs_commands_are_declared():
    # kube-proxy and kube-router run these by name; preflight.py names them, the code never does.
    tree = ast.parse(PREFLIGHT.read_text())
    named = [element.value for node in tree.body if isinstance(node, ast.Assign)
             for target in node.targets if isinstance(target, ast.Name) and target.id.endswith("COMMANDS")
             for element in node.value.elts]
    assert "iptables" in named and "ipset" in named
    assert sorted(set(named) - set(declared())) == []


def test_each_package_says_what_it_provides_and_why():
    entries = package_entries()
    assert len({entry.package for entry in entries}) == len(entries), "a package is listed twice"
    for entry in entries:
        assert entry.provides, f"{entry.package}: say which commands or libraries the project takes from it"
        assert entry.why, f"{entry.package}: say why the project needs it (after --)"
    provided = [token for entry in entries for token in entry.provides]
    assert len(set(provided)) == len(provided), "a command is listed under two packages"


def test_no_message_tells_the_user_to_apt_get_install():
    # `make system` installs what is missing, so a message asking for `apt-get install` is a bug.
    listed = subprocess.run(["git", "grep", "-n", "apt-get install", "--", ".", ":!tools/system", ":!tests/unit"],
                            cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in listed.stdout.splitlines() if "docs/" not in line]
    assert lines == []


# --- the reader -----------------------------------------------------------------------------


def commands(script: str) -> list[str]:
    return [call.command for call in shell_calls(textwrap.dedent(script), "t.sh")]


@pytest.mark.parametrize("script, expected", [
    ("foo a | bar b && baz; qux\n", ["foo", "bar", "baz", "qux"]),
    ('x="$(one "$(two)")"; three\n', ["three", "one", "two"]),
    ("echo 'not (a command)' \"nor (this) one\"\n", []),
    ("cat <<EOF\nnot a command\nEOF\nafter\n", ["cat", "after"]),
    ("list=(alpha beta)\nfor t in \"${list[@]}\"; do run_it \"$t\"; done\n", ["run_it"]),
    ('case "$1" in\n  start) launch ;;\n  *) other ;;\nesac\n', ["launch", "other"]),
    ("helper() { inner; }\nhelper\n", ["inner"]),
    ("n=$(( $(date +%s) - start ))\n(( SECONDS < n ))\n", ["date"]),
    ("long \\\n  --flag\nnext  # comment (not run)\n", ["long", "next"]),
    ("command -v probe >/dev/null || exec real \"$@\"\n", ["real"]),
    ('v="${NAME:-$(fallback)}"\n', ["fallback"]),
])
def test_the_shell_reader_finds_commands_and_only_commands(script, expected):
    assert sorted(commands(script)) == sorted(expected)


def test_the_python_reader_finds_argv_which_wrappers_and_scripts(tmp_path: Path):
    module = tmp_path / "sample.py"
    module.write_text(textwrap.dedent('''
        import shutil, subprocess
        SCRIPT = "mount -t proc proc /x && chroot /x true"
        def f(kubectl):
            subprocess.run(["first", "-x"])
            shutil.which("second")
            argv = ["third", "--flag"]
            subprocess.Popen(argv)
            subprocess.run(["nsenter", "--net=/run/netns/a", "--", "fourth"])
            subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", SCRIPT])
            subprocess.run([str(kubectl), "get"])   # by path: not looked up
            subprocess.run(["/usr/bin/by-path"])
    '''))
    original = commands_called.ROOT
    commands_called.ROOT = tmp_path
    try:
        found = sorted({call.command for call in python_calls(module)})
    finally:
        commands_called.ROOT = original
    assert found == ["chroot", "first", "fourth", "mount", "nsenter", "second", "sh", "third", "unshare"]
