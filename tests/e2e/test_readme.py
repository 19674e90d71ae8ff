"""The README is the user's guide: every environment variable Kiln reads is documented there."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ("kiln", "frontend", "ir", "passes", "codegen", "runtime")
# NOTE: variables Kiln sets for its own child processes, not for users
INTERNAL = {"KILN_RUN_READY_FD"}


def _variables_read() -> set[str]:
    found = set()
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            found |= set(re.findall(r"""["'](KILN_[A-Z0-9_]+)["']""", path.read_text()))
    return found


def test_every_environment_variable_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    variables = _variables_read() - INTERNAL
    assert {"KILN_DEBUG", "KILN_CACHE_DIR"} <= variables     # NOTE: the scan finds them
    missing = sorted(v for v in variables if f"`{v}`" not in readme)
    assert missing == [], f"document these in README.md's environment variables: {missing}"


def test_the_readme_points_only_to_files_in_the_repository():
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), target
    for path in re.findall(r"`((?:examples|bench|tests|docs)/[\w/.-]+\.\w+)", readme):
        assert (ROOT / path).exists(), path


def test_the_readme_testing_example_passes(tmp_path):
    import subprocess
    import sys
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Testing your own model"):]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len([line for line in code.splitlines() if line.strip()]) <= 16
    (tmp_path / "test_readme_example.py").write_text(code)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path / "test_readme_example.py")], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
