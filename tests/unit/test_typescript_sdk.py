"""The TypeScript SDK's own tests (sdks/typescript/test, Node's test runner) and the check that its
API types are what openapi-typescript makes of operator/cairn/server/openapi.yaml, run as part of the
pure suite. node and the SDK's build packages are installed by hack/setup.sh: missing, this fails."""

from __future__ import annotations

import re
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
