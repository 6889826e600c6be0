"""What a release ships: the wheel holds the package and its metadata, nothing else."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel and an sdist built from this checkout by the project's build backend."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-d", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return out


def test_wheel_holds_only_the_package(built: Path) -> None:
    """Every wheel entry is finetune_ops/ or its dist-info, with py.typed and the licence."""
    [wheel] = built.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    strays = [n for n in names if not n.startswith(("finetune_ops/", "finetune_ops-"))]
    assert strays == []
    assert "finetune_ops/py.typed" in names
    assert "finetune_ops/testing/__init__.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any("/tests/" in n or "benchmarks/" in n for n in names)


def test_sdist_holds_what_the_tests_and_docs_need(built: Path) -> None:
    """The source archive can run the tests and build the site: tests, docs, examples, licence."""
    [sdist] = built.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for expected in ("LICENSE", "README.md", "CHANGELOG.md", "mkdocs.yml", "pyproject.toml"):
        assert expected in names
    for folder in ("finetune_ops/", "tests/", "docs/", "examples/", "benchmarks/"):
        assert any(name.startswith(folder) for name in names), folder
