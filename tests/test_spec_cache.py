"""Parsed and validated specs are kept by path and content: a second load of an unchanged file
is the same object, an edited file is read afresh, and the C loader keeps refusing duplicates."""
from __future__ import annotations

from pathlib import Path

import pytest

from accelsim.config import loader
from accelsim.errors import ConfigError
from accelsim.hardware import load_hardware
from accelsim.model.spec import load_model

REPO = Path(__file__).resolve().parent.parent


def test_unchanged_file_is_served_from_the_cache_and_an_edit_is_seen(tmp_path):
    path = tmp_path / "chip.yaml"
    text = (REPO / "hw_configs" / "h100-sxm.yaml").read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    first = load_hardware(str(path))
    assert load_hardware(str(path)) is first
    path.write_text(text.replace("name: h100-sxm", "name: h100-edited"), encoding="utf-8")
    edited = load_hardware(str(path))
    assert edited is not first and edited.name == "h100-edited" and first.name == "h100-sxm"


def test_model_cache_follows_the_file_content(tmp_path):
    path = tmp_path / "m.yaml"
    text = (REPO / "models" / "llama-3.1-8b.yaml").read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    assert load_model(str(path)).num_layers == 32
    path.write_text(text.replace("num_layers: 32", "num_layers: 16"), encoding="utf-8")
    assert load_model(str(path)).num_layers == 16


def test_documents_are_copies_and_duplicates_are_still_refused(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("a: {b: 1}\n", encoding="utf-8")
    doc = loader.read_document(path)
    doc["a"]["b"] = 2  # a caller's edit must not reach the cache
    assert loader.read_document(path) == {"a": {"b": 1}}
    path.write_text("a: 1\nb: 2\na: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        loader.read_document(path)

