"""The documentation builds with ``mkdocs build --strict`` and its reference pages cover the registries.

The reference pages (op support table, pass reference, command-line reference) are generated
from ``hgqir.ops.RULES``, ``hgqir.passes.PASSES`` and the CLI parser by ``docs/gen_reference.py``;
the build runs it as a hook, so a new op, pass, option or command shows up without editing a page.
"""

from __future__ import annotations

import doctest
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("mkdocs")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"


def _gen_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Regenerate the reference pages, then build the whole site strictly into a temporary folder."""
    _gen_reference().generate(REFERENCE)
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def _html(site: Path, page: str) -> str:
    return (site / page / "index.html").read_text(encoding="utf-8")


def test_build_is_strict_clean_and_has_every_page(site: Path) -> None:
    for page in ("concepts", "cli", "keras", "torch", "coming_from", "passes", "vitis", "hls4ml", "internals"):
        assert (site / page / "index.html").exists(), page
    assert (site / "index.html").exists()
    assert not list(site.rglob("*.py")), "the generator script must not be published"


def test_every_registered_op_is_in_the_op_table(site: Path) -> None:
    from hgqir.ops import RULES

    text, html = (REFERENCE / "ops.md").read_text(), _html(site, "reference/ops")
    for kind, rule in RULES.items():
        assert f"## {kind.value}\n" in text, f"op {kind.value} has no section in docs/reference/ops.md"
        assert f'id="{kind.value}"' in html, kind.value
        assert " ".join(rule.doc.split())[:40] in " ".join(text.split()), f"doc of {kind.value} missing"
        for attr in rule.attrs:
            assert f"`{attr}: " in text, f"attribute {attr} of {kind.value} missing"


def test_every_registered_pass_and_option_is_in_the_pass_reference(site: Path) -> None:
    from hgqir.passes import PASSES

    text, html = (REFERENCE / "passes.md").read_text(), _html(site, "reference/passes")
    for name, cls in PASSES.items():
        assert f"## {name}\n" in text, f"pass {name} has no section in docs/reference/passes.md"
        assert f'id="{name}"' in html, name
        for field in cls.options():
            kebab = field.name.replace("_", "-")
            row = next((line for line in text.splitlines() if line.startswith(f"| `{kebab}` |")), None)
            assert row is not None, f"option {kebab} of {name} missing"
            assert not row.rstrip().endswith("|  |"), f"option {kebab} of {name} has no docstring under its field"


def test_every_command_is_in_the_cli_reference(site: Path) -> None:
    from hgqir.cli import build_parser

    text = (REFERENCE / "cli.md").read_text()
    commands = _gen_reference()._subparsers(build_parser())
    assert commands, "no subcommands found"
    for name in commands:
        assert f"## hgqir {name}\n" in text and f"usage: hgqir {name}" in text, name


def test_generation_is_deterministic(tmp_path: Path, site: Path) -> None:
    _gen_reference().generate(tmp_path)
    for page in ("ops.md", "passes.md", "cli.md"):
        assert (tmp_path / page).read_text() == (REFERENCE / page).read_text(), page


def test_field_docstrings_are_read_from_the_source() -> None:
    gen = _gen_reference()
    from hgqir.passes.prune_zero_bits import PruneZeroBits

    docs = gen.field_docs(PruneZeroBits)
    assert docs["keep_io"].startswith("Keep the shapes of graph inputs and outputs")
    assert "max_sweeps" in docs


def test_docstring_doctests_become_code_blocks() -> None:
    gen = _gen_reference()
    md = gen.docstring_markdown("Title, see :mod:`~hgqir.passes.bops`.\n\n>>> 1 + 1\n2\n\nAfter::\n\n    code\n")
    assert "`hgqir.passes.bops`" in md and ":mod:" not in md
    assert "```pycon\n>>> 1 + 1\n2\n```" in md
    assert "```\ncode\n```" in md


@pytest.mark.parametrize("page", ["concepts.md"])
def test_page_examples_run(page: str) -> None:
    result = doctest.testfile(
        str(DOCS / page), module_relative=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    assert result.attempted > 0 and result.failed == 0
