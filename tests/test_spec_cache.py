"""Parsed and validated specs are kept by path and content: a second load of an unchanged file
is the same object, an edited file is read afresh, and the C loader keeps refusing duplicates."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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



# libyaml's loader parses first (issue 20); the pure-Python loader is the reference for every
# outcome.  On any text, parse_text must give what the pure-Python loader alone gives: the same
# data, or the same one-line error.
def _outcome(text: str) -> tuple[str, object]:
    try:
        return "ok", loader.parse_text(text, "t.yaml", as_json=False)
    except ConfigError as err:
        return "error", str(err)


def _reference(text: str, monkeypatch) -> tuple[str, object]:
    with monkeypatch.context() as m:
        m.setattr(loader, "_C_LOADER", None)
        return _outcome(text)


HOSTILE = [
    "a: &x [1, 2]\nb: *x\n",                                   # aliases: the reference decides
    "a: 1\nb: 2\na: 3\n",                                      # duplicate key
    "a: {b: 1, b: 2}\n",                                       # duplicate in a flow mapping
    "a: " + "[" * 65 + "]" * 65 + "\n",                        # one level too deep
    "a: " + "[" * 64 + "]" * 63 + "\n",                        # unbalanced
    "a: " + "[" * 2000 + "]" * 2000 + "\n",                    # beyond libyaml's own limit
    "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 80)) + "  " * 80 + "x: 1\n",
    "a: [1, 2\n",                                              # syntax errors
    "a: b: c\n",
    "\t- x\n",
    "? [1, 2]\n: 3\n",                                         # a key that is not a name
    "x: 1e999\ny: .nan\nz: 0x1F\nw: 0o17\nv: 2001-12-14\n",    # scalars resolved alike
    "",
    "just a string\n",
    "- 1\n- 2\n",
    "a: !!python/object:os.system ls\n",                      # unsafe tags are refused
    "a: '" + "x" * 5000 + "'\n",
    "a: 1" + "0" * 5000 + "\n",                                # an integer too long to convert
]


@pytest.mark.parametrize("text", HOSTILE)
def test_c_loader_outcome_equals_the_reference_loader(text, monkeypatch):
    assert _outcome(text) == _reference(text, monkeypatch)


# Text without control or line-separator characters: PyYAML's own dump does not round-trip
# those (a NEL becomes a space), whichever loader reads it back.
_text = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                     st.floats(allow_nan=False), st.text(_text, max_size=12))
_documents = st.dictionaries(st.text(_text, min_size=1, max_size=8), st.recursive(
    _scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                      st.dictionaries(st.text(_text, min_size=1, max_size=6), inner,
                                                      max_size=4)),
    max_leaves=20), max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_documents, flow=st.booleans())
def test_c_loader_reads_random_documents_as_the_reference_does(doc, flow, monkeypatch):
    text = yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=True)
    outcome = _outcome(text)
    assert outcome == _reference(text, monkeypatch)
    assert outcome == ("ok", doc)
