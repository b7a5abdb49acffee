"""Name resolution and config reads with fewer system calls (issue 20, sixth pass): the same
paths, texts and one-line refusals as ``pathlib``'s checks and one buffered read gave."""
from __future__ import annotations

from pathlib import Path

import pytest

from accelsim.config import loader
from accelsim.errors import ConfigError
from accelsim.model.spec import load_model


@pytest.mark.parametrize("size", [0, 1, 4095, loader._PIECE - 1, loader._PIECE, loader._PIECE + 1,
                                  3 * loader._PIECE + 7])
def test_read_text_returns_the_whole_file_at_every_size(tmp_path, size):
    path = tmp_path / "f.yaml"
    text = ("a: 1\n" * (size // 5 + 1))[:size]
    path.write_text(text, encoding="utf-8")
    assert loader.read_text(path) == text


def test_read_text_limit_is_exact(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_bytes(b"x" * 100)
    assert loader.read_text(path, max_bytes=100) == "x" * 100
    with pytest.raises(ConfigError, match="the most allowed"):
        loader.read_text(path, max_bytes=99)


def test_a_file_growing_past_the_limit_after_the_stat_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "f.yaml"
    path.write_bytes(b"x" * 10)
    real = loader._read_upto

    def grown(source, size, limit):  # the file grows between the stat and the read
        path.write_bytes(b"x" * 500)
        return real(source, size, limit)

    monkeypatch.setattr(loader, "_read_upto", grown)
    with pytest.raises(ConfigError, match="over the"):
        loader.read_text(path, max_bytes=100)


def test_resolve_by_path_name_and_refusals(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert loader.resolve("h100-sxm", "hw_configs", "hardware config").name == "h100-sxm.yaml"
    (tmp_path / "chip.yaml").write_text("name: x\n", encoding="utf-8")
    assert loader.resolve("chip.yaml", "hw_configs", "hardware config") == Path("chip.yaml")
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ConfigError, match="no such hardware config file"):
        loader.resolve("dir.yaml", "hw_configs", "hardware config")
    with pytest.raises(ConfigError, match="no such hardware config file"):
        loader.resolve("missing.yaml", "hw_configs", "hardware config")
    with pytest.raises(ConfigError, match="not a usable hardware config name or path"):
        loader.resolve("x" * 5000, "hw_configs", "hardware config")
    with pytest.raises(ConfigError, match="unknown hardware config 'h100-sxn'; did you mean"):
        loader.resolve("h100-sxn", "hw_configs", "hardware config")
    # a name of a folder in the working directory is a path (as Path.exists said), not a name
    (tmp_path / "h100-sxm").mkdir()
    with pytest.raises(ConfigError, match="no such hardware config file"):
        loader.resolve("h100-sxm", "hw_configs", "hardware config")


def test_an_empty_model_name_is_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="must hold a Hugging Face config.json"):
        load_model("")
