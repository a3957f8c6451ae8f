"""Neural experts: a Hugging Face pipeline from a local folder, and retrieval over local documents."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from experts import builtin_experts
from experts.neural import KB_DIR, RetrievalExpert, TransformersPipelineExpert, docs_expert
from llm_backends.errors import ModelNotFoundError
from mrkl import MRKL
from mrkl.errors import ExpertError
from tests.conftest import ScriptedBackend, card_scorer

WORDS = "[PAD] [UNK] [CLS] [SEP] [MASK] the movie was great terrible good bad i loved it hated".split()


# ---------------------------------------------------------------- TransformersPipelineExpert
@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT sentiment classifier with a word-level vocabulary, saved offline."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)})
    config = BertConfig(
        vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=64, num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1}, initializer_range=0.5,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _reference_probs(folder: Path, text: str) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return torch.softmax(model(**tok(text, return_tensors="pt")).logits, -1)[0].numpy()


def test_pipeline_expert_classifies_like_the_model(tiny_classifier):
    e = TransformersPipelineExpert(
        tiny_classifier, "sentiment-analysis", name="sentiment", description="Sentiment of a text.",
        pipeline_kwargs={"top_k": None}, examples=[("is 'I loved it' positive?", {"text": "I loved it"})],
    )
    assert e.task == "text-classification"
    assert list(e.args_schema()["properties"]) == ["text"]
    texts = ["the movie was great", "i hated it , terrible"]
    for text in texts:
        result = e.run(e.parse_args({"text": text}))
        probs = {d["label"]: d["score"] for d in result.value}
        ref = _reference_probs(tiny_classifier, text)
        np.testing.assert_allclose([probs["NEGATIVE"], probs["POSITIVE"]], ref, atol=1e-5)
        best = "POSITIVE" if ref[1] > ref[0] else "NEGATIVE"
        assert result.text == f"{best} ({ref.max():.2f})"
        assert result.sources == [f"{tiny_classifier.name} (text-classification)"]
    # the two texts get different probabilities: the model really read them
    assert abs(_reference_probs(tiny_classifier, texts[0])[1] - _reference_probs(tiny_classifier, texts[1])[1]) > 1e-3


def test_pipeline_expert_bad_folder_task_and_input(tiny_classifier, tmp_path):
    with pytest.raises(ModelNotFoundError, match="no model folder"):
        TransformersPipelineExpert(tmp_path / "missing", "text-classification", name="x", description="x")
    with pytest.raises(ModelNotFoundError, match="config.json"):
        TransformersPipelineExpert(tmp_path, "text-classification", name="x", description="x")
    with pytest.raises(ValueError, match="unknown pipeline task 'sentiment'"):
        TransformersPipelineExpert(tiny_classifier, "sentiment", name="x", description="x")
    with pytest.raises(ValueError, match="does not take text"):
        TransformersPipelineExpert(tiny_classifier, "image-classification", name="x", description="x")
    e = TransformersPipelineExpert(tiny_classifier, "text-classification", name="x", description="x", max_input_chars=50)
    with pytest.raises(ExpertError, match="at most 50"):
        e.run(e.parse_args({"text": "great " * 20}))
    with pytest.raises(ExpertError, match="empty"):
        e.run(e.parse_args({"text": "  "}))
    # a config without weights: a clear error when it is first used, not at registration
    broken = tmp_path / "no-weights"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_classifier / "config.json").read_text())
    e = TransformersPipelineExpert(broken, "text-classification", name="x", description="x")
    with pytest.raises(ExpertError, match="could not load a text-classification pipeline"):
        e.run(e.parse_args({"text": "the movie was great"}))


@pytest.mark.parametrize("task", ["token-classification", "fill-mask", "feature-extraction"])
def test_pipeline_expert_other_text_tasks(task, tmp_path):
    from transformers import BertConfig, BertForMaskedLM, BertForTokenClassification, BertModel, BertTokenizer

    labels = {0: "O", 1: "B-LOC", 2: "I-LOC"}
    config = BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=20, max_position_embeddings=32, id2label=labels,
                        label2id={v: k for k, v in labels.items()})
    torch.manual_seed(0)
    model = {"token-classification": BertForTokenClassification, "fill-mask": BertForMaskedLM,
             "feature-extraction": BertModel}[task](config)
    model.save_pretrained(tmp_path)
    BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)}).save_pretrained(tmp_path)
    e = TransformersPipelineExpert(tmp_path, task, name="t", description="A tiny model.")
    text = "the movie was [MASK]" if task == "fill-mask" else "the movie was great"
    result = e.run(e.parse_args({"text": text}))
    if task == "token-classification":
        assert all(ent["entity"] in labels.values() and ent["entity"] != "O" for ent in result.value)
        words = [ent["word"] for ent in result.value]
        assert result.text == (", ".join(f"{w} ({ent['entity']})" for w, ent in zip(words, result.value)) or "no entities found")
    elif task == "fill-mask":
        assert len(result.value) == 5 and result.value[0]["score"] >= result.value[-1]["score"]
        assert result.text == result.value[0]["sequence"]
        assert result.value[0]["token_str"] in WORDS
    else:
        arr = np.asarray(result.value, dtype=np.float32)
        assert arr.shape == (1, 6, 16)  # [CLS] the movie was great [SEP], hidden 16
        assert result.text == "embedding of shape (1, 6, 16)"


def test_pipeline_expert_is_routed_to(tiny_classifier):
    e = TransformersPipelineExpert(tiny_classifier, "text-classification", name="sentiment",
                                   description="Sentiment of a text.")
    backend = ScriptedBackend(scorer=card_scorer("sentiment"), outputs=['text": "the movie was great"}'])
    answer = MRKL(experts=[e], backend=backend).ask("is 'the movie was great' positive or negative?")
    assert answer.expert == "sentiment"
    ref = _reference_probs(tiny_classifier, "the movie was great")
    assert answer.text.startswith("POSITIVE" if ref[1] > ref[0] else "NEGATIVE")


# ---------------------------------------------------------------- RetrievalExpert
DOCS = {
    "pets/cats.md": "# Cats\n\n## Food\n\nCats are obligate carnivores and need taurine in their diet.\n\n"
    "## Sleep\n\nAn adult cat sleeps between twelve and sixteen hours a day.\n",
    "space.txt": "The Moon orbits the Earth about once every 27.3 days. Its distance is roughly 384,400 km.",
    "cooking.md": "# Bread\n\nBread dough rises because yeast ferments sugars and releases carbon dioxide.\n",
}


def _write_docs(root: Path) -> None:
    for rel, text in DOCS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


@pytest.fixture
def corpus(tmp_path) -> tuple[Path, RetrievalExpert]:
    root = tmp_path / "docs"
    _write_docs(root)
    (root / "ignored.py").write_text("print('not a document')")
    return root, RetrievalExpert(root, name="notes", description="My notes.", index_path=tmp_path / "index.sqlite")


def _chunk_rows(path: Path) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT chunks.id, chunks.path, vector FROM chunks ORDER BY id").fetchall()
    finally:
        con.close()


def test_retrieval_indexes_and_answers_with_sources(corpus):
    root, e = corpus
    stats = e.index()
    assert (stats.added, stats.updated, stats.unchanged, stats.removed) == (3, 0, 0, 0)
    assert stats.chunks == 4  # cats: 2 sections; space: 1; bread: 1 (the .py file is not a document)
    for _, _, blob in _chunk_rows(e.index_path):
        v = np.frombuffer(blob, dtype=np.float32)
        assert v.shape == (384,) and abs(np.linalg.norm(v) - 1) < 1e-4
    result = e.run(e.parse_args({"query": "how many hours do cats sleep?", "top_k": 2}))
    assert result.value[0]["source"] == "pets/cats.md" and result.value[0]["heading"] == "Cats > Sleep"
    assert "sixteen hours" in result.value[0]["text"]
    assert result.value[0]["score"] > result.value[-1]["score"]
    assert result.sources[0] == "pets/cats.md"
    assert result.text.startswith("[1] pets/cats.md § Cats > Sleep (similarity")
    moon = e.search("How far away is the Moon?", 1)
    assert moon[0].source == "space.txt"
    with pytest.raises(ExpertError, match="no passage in the documents matches"):
        e.run(e.parse_args({"query": "quarterly tax filing deadlines for corporations"}))


def test_reindexing_skips_unchanged_updates_changed_and_removes_deleted(corpus):
    root, e = corpus
    e.index()
    before = {row[0] for row in _chunk_rows(e.index_path)}
    stats = e.index()
    assert (stats.added, stats.updated, stats.unchanged, stats.removed, stats.chunks) == (0, 0, 3, 0, 4)
    assert {row[0] for row in _chunk_rows(e.index_path)} == before  # nothing re-embedded
    # touched but not changed: the hash matches, nothing is re-embedded
    os.utime(root / "space.txt", ns=(1, 1))
    stats = e.index()
    assert (stats.updated, stats.unchanged) == (0, 3)
    assert {row[0] for row in _chunk_rows(e.index_path)} == before
    # changed, removed, added
    (root / "cooking.md").write_text("# Bread\n\nSourdough uses wild yeast and lactic acid bacteria instead of baker's yeast.\n")
    (root / "space.txt").unlink()
    (root / "pets" / "dogs.txt").write_text("Dogs were domesticated from wolves more than fifteen thousand years ago.")
    stats = e.index()
    assert (stats.added, stats.updated, stats.unchanged, stats.removed) == (1, 1, 1, 1)
    paths = {Path(row[1]).name for row in _chunk_rows(e.index_path)}
    assert paths == {"cats.md", "cooking.md", "dogs.txt"}
    assert e.search("What is sourdough made with?", 1)[0].source == "cooking.md"
    assert e.search("Where do dogs come from?", 1)[0].source == "pets/dogs.txt"
    assert all(p.source != "space.txt" for p in e.search("How far away is the Moon?", 3))
    # a fresh expert on the same index file sees the same index without re-embedding
    again = RetrievalExpert(root, name="notes", description="My notes.", index_path=e.index_path)
    assert again.index().unchanged == 3


def test_retrieval_bad_sources_and_index(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    e = RetrievalExpert([empty, tmp_path / "nowhere"], name="notes", description="x", index_path=tmp_path / "i.sqlite")
    with pytest.raises(ExpertError, match="no documents are indexed"):
        e.run(e.parse_args({"query": "anything"}))
    assert (str(tmp_path / "nowhere"), "does not exist") in e.skipped
    # a corrupt index file is rebuilt, not fatal
    root = tmp_path / "docs"
    _write_docs(root)
    bad = tmp_path / "corrupt.sqlite"
    bad.write_bytes(b"this is not a sqlite database" * 100)
    e = RetrievalExpert(root, name="notes", description="x", index_path=bad, max_file_bytes=120)
    stats = e.index()
    assert stats.added == 2 and any("larger than 120 bytes" in why for _, why in e.skipped)
    with pytest.raises(ValueError, match="chunk_overlap"):
        RetrievalExpert(root, name="notes", description="x", chunk_chars=100, chunk_overlap=100)


def test_retrieval_summary_by_the_language_model(corpus):
    root, e = corpus
    lm = ScriptedBackend(chat_reply="Cats sleep 12 to 16 hours a day [1].")
    e.summarizer = lm
    result = e.run(e.parse_args({"query": "how long do cats sleep?", "top_k": 1}))
    assert result.text == "Cats sleep 12 to 16 hours a day [1].\n\nSources: [1] pets/cats.md § Cats > Sleep"
    assert result.data["summary"] == "Cats sleep 12 to 16 hours a day [1]."
    assert "sixteen hours" in lm.calls[-1][1]  # the passages were shown to the model


def test_default_index_lives_in_the_mrkl_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MRKL_CACHE_DIR", str(tmp_path / "cache"))
    e = RetrievalExpert(tmp_path, name="notes", description="x")
    assert e.index_path.parent == tmp_path / "cache" / "retrieval"
    assert e.index_path.name.startswith("notes-") and e.index_path.suffix == ".sqlite"


def test_docs_expert_is_builtin_and_routed_to(tmp_path, monkeypatch):
    monkeypatch.setenv("MRKL_CACHE_DIR", str(tmp_path))
    docs = next(x for x in builtin_experts() if x.name == "docs")
    assert docs.sources == [KB_DIR] and len(docs.examples) >= 8
    assert sorted(p.name for p in KB_DIR.glob("*.md")) == ["cli.md", "compression.md", "experts.md", "plugins.md", "routing.md"]
    # the router picks docs and writes a useless query; the expert's own parser (the query is the
    # whole question) goes first, so the right passages show the question itself was used
    backend = ScriptedBackend(scorer=card_scorer("docs"), generator=lambda prompt: 'query": "x"}')
    system = MRKL(experts=[docs_expert()], backend=backend)
    answer = system.ask("What is FFN Fusion?")
    assert answer.expert == "docs"
    assert answer.value[0]["source"] == "compression.md" and answer.value[0]["heading"].endswith("FFN Fusion")
    assert answer.trace.steps[0].sources[0] == "compression.md"
    answer = system.ask("Which exit status does the command line use for an empty question?")
    assert answer.value[0]["source"] == "cli.md"


@pytest.mark.slow
def test_real_model_routes_docs_questions_to_docs_and_others_elsewhere(smollm2):
    from router.llm_router import LLMRouter

    router = LLMRouter(smollm2)
    experts = builtin_experts()
    chosen = {q: router.choose(q, experts)[0] for q in (
        "What does FFN Fusion fuse together?",
        "How many albums does Led Zeppelin have?",
    )}
    assert list(chosen.values()) == ["docs", "database"], chosen
