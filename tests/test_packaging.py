"""What ``pip install -e .`` (no test extras) must bring: every third-party module the package imports, and
jinja2, which transformers needs to render the chat templates jaxsteer applies (``chat: true``, training)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

from jaxsteer.tokens import CHAT_TEMPLATE, apply_chat, train_bpe_tokenizer

tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11

ROOT = Path(__file__).resolve().parent.parent
TEST_ONLY = {"torch", "pytest", "beartype", "xdist"}


def runtime_dependencies() -> set[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    return {re.split(r"[\s<>=!~\[;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps}


def imported_top_levels() -> dict[str, str]:
    """Top-level module → the first jaxsteer file importing it (absolute imports outside jaxsteer)."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "jaxsteer").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return {m: p for m, p in found.items() if m != "jaxsteer" and m not in sys.stdlib_module_names}


def test_every_third_party_import_is_a_declared_runtime_dependency():
    declared = runtime_dependencies()
    owners = importlib.metadata.packages_distributions()
    for module, path in imported_top_levels().items():
        assert module not in TEST_ONLY, f"{path} imports {module}, a test-only dependency"
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [module])}
        assert dists & declared, f"{path} imports {module} ({', '.join(sorted(dists))}), not in pyproject dependencies"


def test_chat_templates_render_through_jinja2_which_is_declared(tmp_path):
    tok = train_bpe_tokenizer(["hello world"] * 4, str(tmp_path), 300)
    tok.chat_template = CHAT_TEMPLATE  # Gemma's, as the CLA trainer's tokenizers and the organism's carry
    assert apply_chat(tok, "hi").endswith("<start_of_turn>model\n")
    assert "jinja2" in sys.modules  # transformers rendered the template with it
    assert "jinja2" in runtime_dependencies()
