"""The TypeScript SDK's own tests (sdks/typescript/test, Node's test runner) and the check that its
API types are what openapi-typescript makes of operator/cairn/server/openapi.yaml, run as part of the
pure suite. node and the SDK's build packages are installed by hack/setup.sh: missing, this fails."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

from harness import config

SDK = config.REPO / "sdks" / "typescript"


def _npm(*args: str) -> subprocess.CompletedProcess[str]:
    npm = shutil.which("npm")
    assert npm is not None, "npm is not installed: run hack/setup.sh (it installs Debian's nodejs and npm)"
    assert (SDK / "node_modules" / ".package-lock.json").exists(), "run hack/build-typescript.sh (npm ci)"
    return subprocess.run([npm, "run", "--silent", *args], cwd=SDK, capture_output=True, text=True, timeout=300)


def test_the_typescript_sdk_builds_and_its_unit_tests_pass() -> None:
    built = _npm("build")
    assert built.returncode == 0, built.stdout + built.stderr
    tested = _npm("test")
    out = tested.stdout + tested.stderr
    assert tested.returncode == 0, out
    passed = int(re.search(r"^# pass (\d+)$", out, re.M).group(1))  # type: ignore[union-attr]
    failed = int(re.search(r"^# fail (\d+)$", out, re.M).group(1))  # type: ignore[union-attr]
    assert failed == 0 and passed >= 25, f"{passed} passed, {failed} failed:\n{out}"


def test_the_typescript_sdk_types_match_the_openapi_description() -> None:
    checked = _npm("check:api")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "up to date" in checked.stdout


def test_the_typescript_tasks_compile_against_the_sdk() -> None:
    built = _npm("build:tasks")
    assert built.returncode == 0, built.stdout + built.stderr


def _code_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(the file a block quotes, its lines) for each ```python / ```ts block whose first line names a file."""
    out = []
    for _lang, body in re.findall(r"```(python|ts)\n(.*?)```", text, re.S):
        lines = body.splitlines()
        named = re.match(r"^(?:#|//) (\S+\.(?:py|ts))", lines[0]) if lines else None
        if named:
            out.append((named.group(1), lines[1:]))
    return out


def _quoted(path: str, lines: list[str]) -> list[str]:
    source = {ln.strip() for ln in (config.REPO / path).read_text().splitlines()}
    stripped = [re.split(r"\s{2,}//|\s{2,}#", ln)[0].strip() for ln in lines]
    return [ln for ln in stripped if ln and ln not in source]


def test_the_code_the_readme_and_docs_quote_is_in_the_files_they_name() -> None:
    blocks = [
        *_code_blocks((config.REPO / "README.md").read_text()),
        *[("examples/typescript/process-video.ts", lines) for _, lines in _code_blocks_unnamed()],
    ]
    assert len(blocks) >= 3, blocks
    for path, lines in blocks:
        assert _quoted(path, lines) == [], f"lines quoted from {path} that it does not have"


def _code_blocks_unnamed() -> list[tuple[str, list[str]]]:
    """docs/typescript.md's first ts block: the example's task, quoted."""
    text = (config.REPO / "docs" / "typescript.md").read_text()
    body = re.search(r"```ts\n(.*?)```", text, re.S)
    assert body is not None
    return [("ts", body.group(1).splitlines())]


def test_the_commands_of_docs_typescript_md_print_what_the_page_shows() -> None:
    text = (config.REPO / "docs" / "typescript.md").read_text()
    block = re.search(r"```console\n(.*?)```", text, re.S)
    assert block is not None
    shown: list[tuple[str, list[str]]] = []
    for line in block.group(1).splitlines():
        if line.startswith("$ "):
            shown.append((line[2:], []))
        else:
            shown[-1][1].append(line)
    ran = 0
    last = 0
    for command, output in shown:
        if command == "echo $?":
            assert [str(last)] == output, f"the page says the exit code was {output}, it was {last}"
            continue
        proc = subprocess.run(shlex.split(command), cwd=config.REPO, capture_output=True, text=True, timeout=60)
        last = proc.returncode
        assert proc.stdout.splitlines() == output, proc.stdout + proc.stderr
        ran += 1
    assert ran == 2
