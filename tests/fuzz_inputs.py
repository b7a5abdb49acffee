"""Hostile-input property checks shared by the CI fuzz tests (``tests/test_fuzz_inputs.py``) and
the long profile (``benchmarks/bench_fuzz.py``).

Every bundled config kind (hardware of every kind, models, design spaces, studies) and the
foreign formats accelsim reads (Hugging Face ``config.json``, SCALE-Sim ``.cfg`` + topology,
request traces) are mutated -- values replaced by hostile ones (wrong types, huge, tiny,
non-finite, unit strings with bad numbers), keys deleted or added, bytes corrupted, nesting
deepened -- and fed to the loaders and to the CLI's ``main`` in-process.  The property: the input
is valid and every number that comes back is finite (and the headline figures non-negative), or
the project's own error ends it -- exit 2 and one line, never ``internal error``, a traceback,
a hang or NaN/inf.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from accelsim.errors import AccelsimError

REPO = Path(__file__).resolve().parent.parent
CASE_LIMIT_S = 30  # a case that runs longer is a hang
SCALE = float(os.environ.get("ACCELSIM_FUZZ_SCALE", "1"))
TINY_MODEL = {"name": "fuzz-tiny", "source": "a two-layer model for fuzzing inputs",
              "vocab_size": 256, "hidden_size": 64, "num_layers": 2, "max_context": 4096,
              "attention": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 16},
              "mlp": {"kind": "swiglu", "intermediate_size": 128}}


def fuzz(cases: int):
    """Fixed-seed hypothesis settings for ``cases`` examples (times ``ACCELSIM_FUZZ_SCALE``)."""
    return settings(max_examples=max(1, int(cases * SCALE)), derandomize=True, deadline=None,
                    database=None, print_blob=False, suppress_health_check=list(HealthCheck))


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    """The CLI refused with exit 2 and one ``error:`` line naming each of ``needles``."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])

HW_FILES = sorted((REPO / "hw_configs").glob("*.yaml"))
MODEL_FILES = sorted((REPO / "models").glob("*.yaml"))
SPACE_FILES = sorted((REPO / "hw_configs" / "spaces").glob("*.yaml"))
STUDY_FILES = sorted((REPO / "studies").glob("*.yaml"))


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


HW_DOCS = {p.stem: _load(p) for p in HW_FILES}
MODEL_DOCS = {p.stem: _load(p) for p in MODEL_FILES}
SPACE_DOCS = {p.stem: _load(p) for p in SPACE_FILES}
STUDY_DOCS = {p.stem: _load(p) for p in STUDY_FILES}

# Published HF configs (abridged to the fields the importer reads), one per family it supports.
HF_DOCS: dict[str, dict] = {
    "llama": {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
              "vocab_size": 128256, "max_position_embeddings": 131072, "hidden_act": "silu",
              "tie_word_embeddings": False},
    "mixtral": {"model_type": "mixtral", "hidden_size": 4096, "num_hidden_layers": 32,
                "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
                "vocab_size": 32000, "num_local_experts": 8, "num_experts_per_tok": 2},
    "jamba": {"model_type": "jamba", "hidden_size": 4096, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
              "vocab_size": 65536, "num_experts": 16, "num_experts_per_tok": 2, "attn_layer_period": 8,
              "attn_layer_offset": 4, "expert_layer_period": 2, "expert_layer_offset": 1,
              "mamba_d_state": 16, "mamba_d_conv": 4, "mamba_expand": 2, "mamba_dt_rank": 256},
    "mamba": {"model_type": "mamba", "hidden_size": 2560, "num_hidden_layers": 64, "vocab_size": 50277,
              "pad_vocab_size_multiple": 8, "state_size": 16, "conv_kernel": 4, "expand": 2},
    "mamba2": {"model_type": "mamba2", "hidden_size": 2560, "num_hidden_layers": 64,
               "vocab_size": 50277, "state_size": 128, "head_dim": 64, "n_groups": 1},
    "recurrent_gemma": {"model_type": "recurrent_gemma", "hidden_size": 2560, "num_hidden_layers": 26,
                        "num_attention_heads": 10, "num_key_value_heads": 1, "head_dim": 256,
                        "intermediate_size": 15360, "vocab_size": 256000, "lru_width": 2560,
                        "conv1d_width": 4, "attention_window_size": 2048,
                        "block_types": ["recurrent", "recurrent", "attention"]},
    "gemma2": {"model_type": "gemma2", "hidden_size": 3584, "num_hidden_layers": 42,
               "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256,
               "intermediate_size": 14336, "vocab_size": 256000, "sliding_window": 4096,
               "hidden_activation": "gelu_pytorch_tanh"},
    "deepseek_v3": {"model_type": "deepseek_v3", "hidden_size": 7168, "num_hidden_layers": 61,
                    "num_attention_heads": 128, "q_lora_rank": 1536, "kv_lora_rank": 512,
                    "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
                    "intermediate_size": 18432, "moe_intermediate_size": 2048, "n_routed_experts": 256,
                    "num_experts_per_tok": 8, "n_shared_experts": 1, "first_k_dense_replace": 3,
                    "vocab_size": 129280},
    "falcon_h1": {"model_type": "falcon_h1", "hidden_size": 256, "num_hidden_layers": 2,
                  "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
                  "intermediate_size": 512, "vocab_size": 1000, "mamba_d_ssm": 256, "mamba_d_head": 64,
                  "mamba_d_state": 16, "mamba_n_groups": 1},
    "gptj": {"model_type": "gptj", "n_embd": 4096, "n_layer": 28, "n_head": 16, "rotary_dim": 64,
             "n_positions": 2048, "vocab_size": 50400, "activation_function": "gelu_new"},
    "gpt_neox": {"model_type": "gpt_neox", "hidden_size": 768, "num_hidden_layers": 12,
                 "num_attention_heads": 12, "intermediate_size": 3072, "vocab_size": 50304,
                 "rotary_pct": 0.25, "hidden_act": "gelu", "use_parallel_residual": True},
    "falcon": {"model_type": "falcon", "hidden_size": 4544, "num_hidden_layers": 32,
               "num_attention_heads": 71, "vocab_size": 65024, "multi_query": True,
               "parallel_attn": True},
}

SCALESIM_CFG = {"ArrayHeight": "128", "ArrayWidth": "128", "Dataflow": "os",
                "IfmapSramSzkB": "6144", "FilterSramSzkB": "6144", "OfmapSramSzkB": "2048",
                "InterfaceBandwidth": "CALC"}
SCALESIM_TOPOLOGY = [["Layer Name", "M", "N", "K"], ["qkv", "1", "6144", "4096"],
                     ["ffn", "256", "256", "256"]]
TRACE_ROWS = [["arrival_s", "prompt_tokens", "output_tokens"], ["0.0", "64", "8"], ["0.25", "32", "4"],
              ["0.5", "128", "16"]]

# --- hostile values -------------------------------------------------------------------------

NUMBER_TEXT = ["0", "-1", "1", "7", "1e-320", "1e-30", "1e30", "1e300", "1e400", "-1e400", "nan",
               "inf", "-inf", "NaN", "Infinity", "0x10", "1_000", "١٢٨", "", " ", "abc", "1 %", "12%",
               "9" * 400, "-0", "3.5", "1e5000", "128 %(x)s", "\x00"]
SPECIAL: list[Any] = [None, True, False, 0, -1, 1, 2, 3, 7, 64, 4096, 2**31, 2**40, 2**40 + 1, 2**63,
                      10**400, 0.5, -0.0, 1e-320, 5e-324, 1e-7, 1e308, float("inf"), float("-inf"),
                      float("nan"), "", "abc", "4096", "1 %", "inf GHz", "nan TB/s", "1e400 GB", "-3 GB",
                      "3 GB", "1 GHz", "1e-320 W", "1e-300 TB/s", "1e30 PB", "0 W", "auto", [], {}, [1],
                      ["llama"], {"a": 1}, [[[[[]]]]], [{"a": 1}], "x" * 5000, "../../etc/passwd"]
HOSTILE = st.one_of(
    st.sampled_from(SPECIAL),
    st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)


def _fresh(value: Any) -> Any:
    """A private copy of a drawn value: ``SPECIAL``'s lists and dicts are shared between draws,
    and editing one in place would leak state from case to case (or nest a dict in itself)."""
    return copy.deepcopy(value)


def _paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


def _get(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


def _scaled_quantity(text: str, number: str) -> str:
    """'3.35 TB/s' with its number replaced (keeps the unit, so validation reaches the value)."""
    parts = text.split(None, 1)
    return f"{number} {parts[1]}" if len(parts) == 2 else number


@st.composite
def mutated(draw: st.DrawFn, doc: Any, max_edits: int = 3) -> Any:
    """``doc`` with 1..max_edits edits: a value replaced, scaled or retyped, a key deleted or added,
    a list emptied or grown."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, max_edits))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        if not path:
            if draw(st.integers(0, 9)) == 0:
                return draw(st.sampled_from([[], "text", 3, None, [doc]]))
            continue
        parent, key = _get(doc, path[:-1]), path[-1]
        value = parent[key]
        action = draw(st.sampled_from(["replace", "replace", "number", "delete", "add", "grow"]))
        if action == "replace":
            parent[key] = _fresh(draw(HOSTILE))
        elif action == "number":
            number = draw(st.sampled_from(NUMBER_TEXT))
            if isinstance(value, str):
                parent[key] = _scaled_quantity(value, number)
            else:
                try:
                    parent[key] = yaml.safe_load(number) if number.strip() else number
                except yaml.YAMLError:
                    parent[key] = number
        elif action == "delete":
            del parent[key]
        elif action == "add":
            target = value if isinstance(value, dict) else parent
            if isinstance(target, dict):
                target[draw(st.sampled_from(["extra", "kind", "name", "source", "num_layers", "1"]))] = \
                    _fresh(draw(HOSTILE))
        elif action == "grow" and isinstance(value, list) and 0 < len(value) <= 4:
            times = draw(st.sampled_from([0, 2, 50]))
            parent[key] = [copy.deepcopy(v) for v in value for _ in range(times)]
    return doc


@st.composite
def corrupted(draw: st.DrawFn, text: str) -> bytes:
    """Serialised text, sometimes with its bytes damaged: bad UTF-8, truncation, deep nesting."""
    data = text.encode("utf-8")
    kind = draw(st.sampled_from(["none"] * 6 + ["bytes", "truncate", "nest", "line", "bom"]))
    if kind == "bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    elif kind == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
    elif kind == "nest":
        depth = draw(st.sampled_from([10, 63, 65, 200, 5000]))
        data += (b"\nzz: " + b"[" * depth + b"]" * depth + b"\n")
    elif kind == "line":
        lines = data.split(b"\n")
        at = draw(st.integers(0, max(len(lines) - 1, 0)))
        lines.insert(at, lines[at] if lines else b"")
        data = b"\n".join(lines)
    elif kind == "bom":
        data = b"\xef\xbb\xbf" + data
    return data


def csv_text(rows: list[list[Any]]) -> str:
    return "\n".join(",".join(str(c) for c in row) for row in rows) + "\n"


@st.composite
def mutated_rows(draw: st.DrawFn, rows: list[list[str]]) -> list[list[Any]]:
    rows = [list(r) for r in rows]
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(rows) - 1))
        action = draw(st.sampled_from(["cell", "cell", "drop", "dup", "short"]))
        if action == "cell" and rows[i]:
            j = draw(st.integers(0, len(rows[i]) - 1))
            rows[i][j] = draw(st.one_of(st.sampled_from(NUMBER_TEXT), st.text(max_size=8)))
        elif action == "drop" and len(rows) > 1:
            rows.pop(i)
        elif action == "dup":
            rows.insert(i, list(rows[i]))
        elif action == "short":
            rows[i] = rows[i][:draw(st.integers(0, len(rows[i])))]
    return rows


# --- checks ---------------------------------------------------------------------------------

class Hang(Exception):
    """A case ran past ``CASE_LIMIT_S``."""


@contextlib.contextmanager
def time_limit(seconds: float = CASE_LIMIT_S) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def numbers(value: Any) -> Iterator[float]:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield float(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from numbers(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from numbers(v)


def assert_finite(data: Any, nonnegative: tuple[str, ...] = ()) -> None:
    for x in numbers(data):
        assert math.isfinite(x), f"non-finite number in a result: {data!r:.300}"
    if isinstance(data, dict):
        for key in nonnegative:
            if data.get(key) is not None:
                assert data[key] >= 0, f"{key} is negative: {data[key]}"


def run_cli(*args: str) -> tuple[int, str, str]:
    """``accelsim.cli.main`` in-process with stdout/stderr captured; asserts the error contract."""
    from accelsim.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), time_limit():
        code = main(list(args))
    text = err.getvalue()
    if code != 0:
        lines = text.strip().splitlines()
        assert "internal error" not in text, text
        assert code == 2, (code, text)
        assert len(lines) == 1 and lines[0].startswith("error: "), text
    return code, out.getvalue(), text


def own_error(call, *args: Any, **kwargs: Any) -> Any:
    """Run a loader: its value, or None when it raised the project's own one-line error."""
    with time_limit():
        try:
            return call(*args, **kwargs)
        except AccelsimError as err:
            line = err.one_line()
            assert line and "\n" not in line, line
            return None


class Scratch:
    """A folder of files for one test run (hypothesis calls the test body many times)."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="accelsim-fuzz-")
        self.root = Path(self._dir.name)

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.root / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        return path

    def close(self) -> None:
        self._dir.cleanup()


def dump_yaml(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=10**6)


def dump_json(doc: Any) -> str:
    return json.dumps(doc, allow_nan=True)


RESULT_KEYS = ("latency_s", "tokens_per_s", "joules_per_token")
