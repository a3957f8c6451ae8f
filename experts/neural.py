"""Neural submodels as experts: a Hugging Face pipeline, and retrieval over local documents.

MRKL routes to neural modules as well as symbolic ones (Karpas et al., 2022,
"MRKL Systems", Sec. 2: "the modules can be neural ... e.g. a specialised
sentiment classifier or a retriever over a corpus").

* :class:`TransformersPipelineExpert` wraps any local Hugging Face model folder
  and text pipeline task (text classification, NER, zero-shot classification,
  fill-mask, feature extraction, text generation), loaded offline on first use.
* :class:`RetrievalExpert` indexes local text / Markdown files into SQLite with
  sentence embeddings (all-MiniLM-L6-v2 by default; Reimers & Gurevych, 2019) and
  answers with the top passages and their sources, optionally summarised by a
  language model (retrieval-augmented generation; Lewis et al., 2020).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from llm_backends.errors import BackendError, ModelNotFoundError
from llm_backends.resolve import cache_dir
from mrkl.errors import ExpertError
from mrkl.expert import Expert, ExpertResult, RoutingExample, as_routing_examples

__all__ = [
    "TransformersPipelineExpert",
    "TEXT_TASKS",
    "RetrievalExpert",
    "Passage",
    "IndexStats",
    "DEFAULT_DOCUMENT_GLOBS",
    "docs_expert",
    "KB_DIR",
]

# ---------------------------------------------------------------------------
# TransformersPipelineExpert
# ---------------------------------------------------------------------------

#: Pipeline tasks whose input is text (aliases: "sentiment-analysis", "ner").
TEXT_TASKS = frozenset(
    {
        "text-classification",
        "token-classification",
        "zero-shot-classification",
        "fill-mask",
        "feature-extraction",
        "text-generation",
        "question-answering",  # present in transformers < 5
        "summarization",  # present in transformers < 5
        "translation",  # present in transformers < 5
        "text2text-generation",  # present in transformers < 5
    }
)


class TextArgs(BaseModel):
    """Arguments of a text pipeline: the text to process."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="the text to process, copied from the question")


class ZeroShotArgs(BaseModel):
    """Arguments of zero-shot classification: the text and the candidate labels."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="the text to classify")
    candidate_labels: list[str] = Field(min_length=1, max_length=50, description="the labels to choose from")


class QuestionAnsweringArgs(BaseModel):
    """Arguments of extractive question answering: a question and the context holding its answer."""

    model_config = ConfigDict(extra="forbid")
    question: str = Field(description="the question")
    context: str = Field(description="the text that holds the answer")


def _canonical_task(task: str) -> str:
    """The canonical name of a pipeline task; ValueError naming the text tasks when unknown or not text."""
    from transformers.pipelines import check_task

    try:
        canonical = check_task(task)[0]
    except KeyError:
        raise ValueError(
            f"unknown pipeline task {task!r}; text tasks: {', '.join(sorted(t for t in TEXT_TASKS if _known(t)))}"
        ) from None
    canonical = canonical.split("_")[0]  # "translation_en_to_fr" -> "translation"
    if canonical not in TEXT_TASKS:
        raise ValueError(
            f"pipeline task {task!r} does not take text; TransformersPipelineExpert runs text tasks: "
            f"{', '.join(sorted(t for t in TEXT_TASKS if _known(t)))}"
        )
    return canonical


def _known(task: str) -> bool:
    from transformers.pipelines import check_task

    try:
        check_task(task)
    except KeyError:
        return False
    return True


class TransformersPipelineExpert(Expert):
    """Any local Hugging Face model folder behind a ``transformers.pipeline`` as an expert.

    Args:
        model: a model folder (``config.json``, weights, tokenizer files), as written by
            ``save_pretrained``. Hub ids are never downloaded.
        task: a text pipeline task or alias (:data:`TEXT_TASKS`; ``"sentiment-analysis"``, ``"ner"``).
        name: expert name (lowercase letters, digits, underscores).
        description: what the expert does, for the router.
        examples: routing examples (:class:`RoutingExample` or ``(question, args)`` pairs).
        device: torch device (``"cpu"``, ``"cuda:0"``, ...).
        pipeline_kwargs: extra keyword arguments for every pipeline call (e.g.
            ``{"top_k": None}`` for all class scores, ``{"max_new_tokens": 40}``).
        max_input_chars: longer inputs are refused with :class:`ExpertError`.
        answer_template: optional jinja2 answer template.

    Arguments (``Args``): ``text`` for most tasks; ``text`` and ``candidate_labels`` for
    zero-shot classification; ``question`` and ``context`` for question answering.

    The result ``value`` is the pipeline's output as plain Python (lists/dicts of labels,
    scores in [0, 1], spans with character offsets; feature extraction: a nested list of
    floats of shape ``(tokens, hidden)``); ``text`` is a short reading of it (the top label
    and its score, the entities, the generated text ...).

    Raises:
        ModelNotFoundError: the folder does not exist or has no ``config.json``.
        ValueError: the task is unknown, or does not take text.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        task: str,
        *,
        name: str,
        description: str,
        examples: Iterable[RoutingExample | tuple[str, dict[str, Any]]] = (),
        device: str = "cpu",
        pipeline_kwargs: dict[str, Any] | None = None,
        max_input_chars: int = 20_000,
        answer_template: str | None = None,
    ) -> None:
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise ModelNotFoundError(f"no model folder at {folder} (hub downloads are disabled; pass a local folder)")
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(f"model folder {folder} has no config.json")
        self.model_dir = folder.resolve()
        self.task = _canonical_task(task)
        self._pipeline_task = task  # as given: "translation_en_to_fr" keeps its language pair
        self.device = device
        self.pipeline_kwargs = dict(pipeline_kwargs or {})
        self.max_input_chars = max_input_chars
        self.name = name  # type: ignore[misc]
        self.description = description  # type: ignore[misc]
        self.Args = {  # type: ignore[misc]
            "zero-shot-classification": ZeroShotArgs,
            "question-answering": QuestionAnsweringArgs,
        }.get(self.task, TextArgs)
        self.examples = as_routing_examples(examples)  # type: ignore[misc]
        self.answer_template = answer_template  # type: ignore[misc]
        self._pipeline: Any = None
        self._lock = threading.Lock()
        super().__init__()

    def load(self) -> Any:
        """Load the pipeline (once; later calls return it).

        Raises:
            BackendError: transformers could not build the pipeline from the folder
                (missing weights or tokenizer, a model class that does not fit the task).
        """
        with self._lock:
            if self._pipeline is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from transformers import pipeline

                try:
                    self._pipeline = pipeline(
                        self._pipeline_task, model=str(self.model_dir), tokenizer=str(self.model_dir), device=self.device
                    )
                except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear error
                    raise BackendError(
                        f"could not load a {self.task} pipeline from {self.model_dir}: {type(exc).__name__}: {exc}"
                    ) from exc
            return self._pipeline

    def run(self, args: BaseModel) -> ExpertResult:
        """Run the pipeline on the arguments.

        Raises:
            ExpertError: the input is empty or too long, the model cannot be loaded, or it fails.
        """
        fields = args.model_dump()
        longest = max((len(v) for v in fields.values() if isinstance(v, str)), default=0)
        if longest > self.max_input_chars:
            raise ExpertError(f"the input is {longest:,} characters long; this expert takes at most {self.max_input_chars:,}")
        if not any(isinstance(v, str) and v.strip() for v in fields.values()):
            raise ExpertError("the input text is empty")
        try:
            pipe = self.load()
        except BackendError as exc:
            raise ExpertError(str(exc)) from exc
        kwargs = dict(self.pipeline_kwargs)
        try:
            if self.task == "zero-shot-classification":
                out = pipe(fields["text"], candidate_labels=fields["candidate_labels"], **kwargs)
            elif self.task == "question-answering":
                out = pipe(question=fields["question"], context=fields["context"], **kwargs)
            else:
                if self.task in ("text-classification", "feature-extraction"):
                    kwargs.setdefault("truncation", True)  # inputs longer than the model's context are cut
                out = pipe(fields["text"], **kwargs)
        except Exception as exc:  # noqa: BLE001 - the model's failure is the expert's error
            raise ExpertError(f"the {self.task} model failed: {type(exc).__name__}: {exc}") from exc
        value = _plain(out)
        return ExpertResult(value=value, text=self._read(value), sources=[f"{self.model_dir.name} ({self.task})"])

    def _read(self, value: Any) -> str:
        """A short human reading of the pipeline output."""
        v = value[0] if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (list, dict)) else value
        if self.task == "text-classification":
            items = v if isinstance(v, list) else [v]
            best = max(items, key=lambda d: d["score"])
            return f"{best['label']} ({best['score']:.2f})"
        if self.task == "token-classification":
            items = v if isinstance(v, list) else [v]
            if not items:
                return "no entities found"
            return ", ".join(f"{e.get('word')} ({e.get('entity_group') or e.get('entity')})" for e in items)
        if self.task == "zero-shot-classification":
            return f"{v['labels'][0]} ({v['scores'][0]:.2f})"
        if self.task == "fill-mask":
            items = v if isinstance(v, list) else [v]
            return str(items[0].get("sequence") or items[0].get("token_str"))
        if self.task == "feature-extraction":
            arr = np.asarray(value, dtype=np.float32)
            return f"embedding of shape {tuple(arr.shape)}"
        if isinstance(v, dict):
            for key in ("generated_text", "summary_text", "translation_text", "answer"):
                if key in v:
                    return str(v[key])
        return json.dumps(value, ensure_ascii=False, default=str)[:2000]


def _plain(obj: Any) -> Any:
    """Pipeline output as JSON-compatible Python (numpy scalars and arrays become floats and lists)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "tolist"):  # torch tensors
        return obj.tolist()
    return obj


# ---------------------------------------------------------------------------
# RetrievalExpert
# ---------------------------------------------------------------------------

#: File patterns indexed by default.
DEFAULT_DOCUMENT_GLOBS: tuple[str, ...] = ("*.md", "*.markdown", "*.txt", "*.rst")
#: The bundled knowledge base: short documents about mrkl itself.
KB_DIR = Path(__file__).resolve().parent / "data" / "kb"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL REFERENCES files(path) ON DELETE CASCADE,
    ord INTEGER NOT NULL, heading TEXT NOT NULL, text TEXT NOT NULL, vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_path ON chunks(path);
"""


@dataclass(frozen=True)
class Passage:
    """One retrieved passage.

    Attributes:
        text: the chunk's text.
        source: the file it came from, relative to its source folder (absolute for single files).
        heading: the Markdown heading path above it (``"Routing > Expert choice"``), or ``""``.
        score: cosine similarity to the query, in [-1, 1].
    """

    text: str
    source: str
    heading: str
    score: float

    def cite(self) -> str:
        """``source § heading`` (or just the source)."""
        return f"{self.source} § {self.heading}" if self.heading else self.source


@dataclass(frozen=True)
class IndexStats:
    """What an index update did: files added, re-embedded, unchanged, removed; chunks in the index."""

    added: int
    updated: int
    unchanged: int
    removed: int
    chunks: int
    seconds: float


class RetrievalArgs(BaseModel):
    """Arguments of document retrieval: what to look up, and how many passages to return."""

    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=2000, description="what to look up, in plain words")
    top_k: int = Field(3, ge=1, le=10, description="number of passages to return")


class RetrievalExpert(Expert):
    """Answer from local text / Markdown documents by embedding retrieval.

    Documents are split at Markdown headings, then into chunks of at most
    ``chunk_chars`` characters (with ``chunk_overlap`` characters of overlap) by
    langchain-text-splitters; each chunk is embedded, heading path prepended, with a
    sentence encoder (all-MiniLM-L6-v2: 384-dimensional, unit-normalised, float32) and
    stored in a SQLite file with the file's path, modification time, size and SHA-256.
    A query is embedded the same way and the chunks are ranked by cosine similarity
    (exhaustive search; a few thousand chunks take milliseconds).

    Re-indexing (:meth:`index`, run on first use) reads only files whose size or
    modification time changed, re-embeds only those whose content hash changed, and
    removes the chunks of files that are gone. Changing the encoder or the chunking
    rebuilds the index.

    Args:
        sources: files and folders to index (folders recursively, files matching ``globs``).
        name, description, examples: the expert's routing card.
        index_path: the SQLite file; default ``<mrkl cache>/retrieval/<name>-<hash>.sqlite``,
            the hash taken over the source paths and the encoder.
        encoder: an embedding-model alias or folder (see
            :func:`llm_backends.embeddings.load_sentence_encoder`), or an object with
            ``encode(texts, normalize_embeddings=True) -> ndarray``.
        globs: file-name patterns of documents inside folders.
        chunk_chars, chunk_overlap: chunk size and overlap, in characters.
        min_score: passages below this cosine similarity are not returned; when none is
            left the expert raises :class:`ExpertError` ("nothing relevant").
        max_file_bytes: larger files are skipped (and listed in :attr:`skipped`).
        summarizer: an ``LLMBackend`` (anything with ``chat``); when given, the answer is
            the model's summary of the passages followed by their sources; else the
            passages themselves.
        summary_max_tokens: the summary's token budget.

    Raises:
        ValueError: no sources, or bad chunk sizes.
    """

    Args = RetrievalArgs

    def __init__(
        self,
        sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        name: str = "docs",
        description: str = "Look up passages in local documents and answer from them, citing the files.",
        examples: Iterable[RoutingExample | tuple[str, dict[str, Any]]] = (),
        index_path: str | os.PathLike[str] | None = None,
        encoder: Any = "all-minilm-l6-v2",
        globs: Sequence[str] = DEFAULT_DOCUMENT_GLOBS,
        chunk_chars: int = 700,
        chunk_overlap: int = 80,
        min_score: float = 0.2,
        max_file_bytes: int = 2_000_000,
        summarizer: Any = None,
        summary_max_tokens: int = 160,
        answer_template: str | None = None,
    ) -> None:
        if isinstance(sources, (str, os.PathLike)):
            sources = [sources]
        self.sources = [Path(s).expanduser().resolve() for s in sources]
        if not self.sources:
            raise ValueError("RetrievalExpert needs at least one file or folder to index")
        if chunk_chars < 50 or not 0 <= chunk_overlap < chunk_chars:
            raise ValueError(f"need chunk_chars >= 50 and 0 <= chunk_overlap < chunk_chars, got {chunk_chars}, {chunk_overlap}")
        self.name = name  # type: ignore[misc]
        self.description = description  # type: ignore[misc]
        self.examples = as_routing_examples(examples)  # type: ignore[misc]
        self.answer_template = answer_template  # type: ignore[misc]
        self.encoder_spec = encoder
        self.globs = tuple(globs)
        self.chunk_chars = chunk_chars
        self.chunk_overlap = chunk_overlap
        self.min_score = min_score
        self.max_file_bytes = max_file_bytes
        self.summarizer = summarizer
        self.summary_max_tokens = summary_max_tokens
        encoder_id = encoder if isinstance(encoder, (str, os.PathLike)) else type(encoder).__name__
        self._encoder_id = str(encoder_id)
        if index_path is None:
            key = hashlib.sha256(
                json.dumps([str(s) for s in self.sources] + [self._encoder_id]).encode()
            ).hexdigest()[:12]
            index_path = cache_dir() / "retrieval" / f"{name}-{key}.sqlite"
        self.index_path = Path(index_path).expanduser()
        self.skipped: list[tuple[str, str]] = []
        self._encoder: Any = None
        self._matrix: tuple[np.ndarray, list[tuple[str, str, str]]] | None = None
        self._indexed = False
        self._lock = threading.RLock()
        super().__init__()

    # ------------------------------------------------------------ parts
    def symbolic_args(self, question: str) -> dict[str, Any] | None:
        """The whole question is the query: retrieval needs no argument extraction."""
        q = question.strip()
        return {"query": q[:2000]} if q else None

    @property
    def encoder(self) -> Any:
        """The sentence encoder (loaded on first use)."""
        if self._encoder is None:
            if isinstance(self.encoder_spec, (str, os.PathLike)):
                from llm_backends.embeddings import load_sentence_encoder

                self._encoder = load_sentence_encoder(self.encoder_spec)
            else:
                self._encoder = self.encoder_spec
        return self._encoder

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(self.encoder.encode(texts, normalize_embeddings=True), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise BackendError(f"the encoder returned shape {vectors.shape} for {len(texts)} texts")
        return vectors

    def _settings(self) -> str:
        return json.dumps(
            {"encoder": self._encoder_id, "chunk_chars": self.chunk_chars, "chunk_overlap": self.chunk_overlap, "v": 1}
        )

    def _connect(self) -> sqlite3.Connection:
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.index_path, timeout=30)
        con.execute("PRAGMA foreign_keys = ON")
        try:
            con.executescript(_SCHEMA)
        except sqlite3.DatabaseError:
            # not a usable index (a corrupt or foreign file): start again, never fail the question
            con.close()
            self.index_path.unlink(missing_ok=True)
            con = sqlite3.connect(self.index_path, timeout=30)
            con.execute("PRAGMA foreign_keys = ON")
            con.executescript(_SCHEMA)
        return con

    def documents(self) -> list[tuple[Path, str]]:
        """The files to index and how each is cited: ``[(absolute path, display name)]``, sorted.

        A source that does not exist is listed in :attr:`skipped` (its chunks, if any, are removed).
        """
        found: dict[Path, str] = {}
        for src in self.sources:
            if src.is_file():
                found[src] = src.name
            elif src.is_dir():
                for pattern in self.globs:
                    for f in src.rglob(pattern):
                        if f.is_file():
                            found[f.resolve()] = f.relative_to(src).as_posix()
            else:
                self.skipped.append((str(src), "does not exist"))
        return sorted(found.items())

    def chunk(self, text: str) -> list[tuple[str, str]]:
        """Split a document into ``(heading path, chunk text)`` pairs (Markdown headings #, ##, ###)."""
        from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

        headers = [("#", "h1"), ("##", "h2"), ("###", "h3")]
        sections = MarkdownHeaderTextSplitter(headers_to_split_on=headers, strip_headers=True).split_text(text)
        splitter = RecursiveCharacterTextSplitter(chunk_size=self.chunk_chars, chunk_overlap=self.chunk_overlap)
        out = []
        for section in sections:
            heading = " > ".join(section.metadata[k] for k in ("h1", "h2", "h3") if section.metadata.get(k))
            for piece in splitter.split_text(section.page_content):
                if piece.strip():
                    out.append((heading, piece.strip()))
        return out

    # ------------------------------------------------------------ indexing
    def index(self, *, force: bool = False) -> IndexStats:
        """Bring the SQLite index up to date with the documents.

        Args:
            force: re-embed every file.

        Returns:
            :class:`IndexStats`.

        Raises:
            BackendError: the encoder cannot be loaded.
            sqlite3.Error: the index file cannot be written (e.g. a read-only folder).
        """
        with self._lock:
            t0 = time.perf_counter()
            self.skipped = []
            added = updated = unchanged = 0
            con = self._connect()
            try:
                with con:
                    row = con.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
                    if force or row is None or row[0] != self._settings():
                        con.execute("DELETE FROM chunks")
                        con.execute("DELETE FROM files")
                        con.execute("INSERT OR REPLACE INTO meta VALUES ('settings', ?)", (self._settings(),))
                known = {p: (m, s, h) for p, m, s, h in con.execute("SELECT path, mtime_ns, size, sha256 FROM files")}
                docs = self.documents()
                for path, display in docs:
                    try:
                        st = path.stat()
                        if st.st_size > self.max_file_bytes:
                            self.skipped.append((str(path), f"larger than {self.max_file_bytes:,} bytes"))
                            continue
                        old = known.get(str(path))
                        if old and old[0] == st.st_mtime_ns and old[1] == st.st_size:
                            unchanged += 1
                            continue
                        data = path.read_bytes()
                        digest = hashlib.sha256(data).hexdigest()
                        if old and old[2] == digest:  # touched, not changed
                            with con:
                                con.execute(
                                    "UPDATE files SET mtime_ns = ?, size = ? WHERE path = ?",
                                    (st.st_mtime_ns, st.st_size, str(path)),
                                )
                            unchanged += 1
                            continue
                        text = data.decode("utf-8", errors="replace")
                    except OSError as exc:
                        self.skipped.append((str(path), f"unreadable: {exc}"))
                        continue
                    pieces = self.chunk(text)
                    vectors = self._embed([f"{h}\n{t}" if h else t for h, t in pieces]) if pieces else np.zeros((0, 0))
                    with con:  # one transaction per file: an interrupted run loses nothing indexed before
                        con.execute("DELETE FROM files WHERE path = ?", (str(path),))
                        con.execute("DELETE FROM chunks WHERE path = ?", (str(path),))
                        con.execute(
                            "INSERT INTO files VALUES (?, ?, ?, ?)", (str(path), st.st_mtime_ns, st.st_size, digest)
                        )
                        con.executemany(
                            "INSERT INTO chunks (path, ord, heading, text, vector) VALUES (?, ?, ?, ?, ?)",
                            [
                                (str(path), i, h, t, vectors[i].astype(np.float32).tobytes())
                                for i, (h, t) in enumerate(pieces)
                            ],
                        )
                        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"display:{path}", display))
                    if old:
                        updated += 1
                    else:
                        added += 1
                present = {str(p) for p, _ in docs}
                gone = [p for p in known if p not in present]
                with con:
                    for p in gone:
                        con.execute("DELETE FROM chunks WHERE path = ?", (p,))
                        con.execute("DELETE FROM files WHERE path = ?", (p,))
                        con.execute("DELETE FROM meta WHERE key = ?", (f"display:{p}",))
                n_chunks = con.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
            finally:
                con.close()
            self._matrix = None
            self._indexed = True
            return IndexStats(added, updated, unchanged, len(gone), n_chunks, time.perf_counter() - t0)

    def _load_matrix(self) -> tuple[np.ndarray, list[tuple[str, str, str]]]:
        with self._lock:
            if not self._indexed:
                self.index()
            if self._matrix is None:
                con = self._connect()
                try:
                    display = {
                        k.removeprefix("display:"): v
                        for k, v in con.execute("SELECT key, value FROM meta WHERE key LIKE 'display:%'")
                    }
                    rows = con.execute("SELECT path, heading, text, vector FROM chunks ORDER BY path, ord").fetchall()
                finally:
                    con.close()
                if rows:
                    matrix = np.stack([np.frombuffer(r[3], dtype=np.float32) for r in rows])
                else:
                    matrix = np.zeros((0, 0), dtype=np.float32)
                self._matrix = (matrix, [(display.get(r[0], r[0]), r[1], r[2]) for r in rows])
            return self._matrix

    # ------------------------------------------------------------ querying
    def search(self, query: str, top_k: int = 3) -> list[Passage]:
        """The ``top_k`` passages most similar to ``query`` with cosine similarity ≥ ``min_score``, best first.

        Indexes the documents first if this expert has not done so yet.
        """
        matrix, meta = self._load_matrix()
        if not meta:
            return []
        q = self._embed([query])[0]
        sims = matrix @ q
        order = np.argsort(-sims)[:top_k]
        return [
            Passage(text=meta[i][2], source=meta[i][0], heading=meta[i][1], score=float(sims[i]))
            for i in order
            if sims[i] >= self.min_score
        ]

    def run(self, args: BaseModel) -> ExpertResult:
        """Retrieve passages for ``args.query``; summarise them when a summarizer is set.

        Raises:
            ExpertError: no document is indexed, no passage is relevant enough, or the
                encoder cannot be loaded.
        """
        try:
            passages = self.search(args.query, args.top_k)
        except BackendError as exc:
            raise ExpertError(f"retrieval is unavailable: {exc}") from exc
        except (sqlite3.Error, OSError) as exc:
            raise ExpertError(f"the document index at {self.index_path} cannot be used: {exc}") from exc
        if not passages:
            n = len(self._matrix[1]) if self._matrix else 0
            if n == 0:
                raise ExpertError(f"no documents are indexed (sources: {', '.join(map(str, self.sources))})")
            raise ExpertError(f"no passage in the documents matches {args.query!r} (similarity below {self.min_score})")
        sources = list(dict.fromkeys(p.source for p in passages))
        value = [
            {"text": p.text, "source": p.source, "heading": p.heading, "score": round(p.score, 4)} for p in passages
        ]
        listing = "\n\n".join(f"[{i}] {p.cite()} (similarity {p.score:.2f}):\n{p.text}" for i, p in enumerate(passages, 1))
        if self.summarizer is not None:
            summary = self._summarise(args.query, passages)
            if summary:
                text = f"{summary}\n\nSources: " + "; ".join(f"[{i}] {p.cite()}" for i, p in enumerate(passages, 1))
                return ExpertResult(value=value, text=text, sources=sources, data={"summary": summary})
        return ExpertResult(value=value, text=listing, sources=sources)

    def _summarise(self, query: str, passages: list[Passage]) -> str:
        """The summarizer's answer from the passages; ``""`` when it fails (the passages are answered instead)."""
        context = "\n\n".join(f"[{i}] {p.text}" for i, p in enumerate(passages, 1))
        messages = [
            {
                "role": "system",
                "content": "Answer the question using only the numbered passages. Be brief. "
                "If the passages do not answer it, say so.",
            },
            {"role": "user", "content": f"Passages:\n{context}\n\nQuestion: {query}"},
        ]
        try:
            return str(self.summarizer.chat(messages, max_new_tokens=self.summary_max_tokens)).strip()
        except BackendError:
            return ""


# ---------------------------------------------------------------------------
# the bundled knowledge base
# ---------------------------------------------------------------------------

_DOCS_EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("What is an expert in mrkl?", {"query": "What is an expert in mrkl?"}),
    ("How does the router choose an expert?", {"query": "How does the router choose an expert?"}),
    ("How do I add my own expert to mrkl?", {"query": "How do I add my own expert to mrkl?"}),
    ("Which commands does the mrkl command line have?", {"query": "Which commands does the mrkl command line have?"}),
    ("What are Parallel Context Windows?", {"query": "What are Parallel Context Windows?"}),
    ("What does Puzzle do to a language model?", {"query": "What does Puzzle do to a language model?"}),
    ("Explain FFN Fusion.", {"query": "Explain FFN Fusion."}),
    ("How do mrkl plugins work?", {"query": "How do mrkl plugins work?"}),
    ("Can I use mrkl with LangChain?", {"query": "Can I use mrkl with LangChain?"}),
    ("What happens when no expert fits a question?", {"query": "What happens when no expert fits a question?"}),
]


def docs_expert(summarizer: Any = None, **kwargs: Any) -> RetrievalExpert:
    """The ``docs`` expert: retrieval over mrkl's own documentation (:data:`KB_DIR`).

    Answers questions about mrkl itself (experts, routing, the CLI, plugins, LangChain,
    PCW, Puzzle, FFN Fusion) with passages and their sources. The index is built
    under the mrkl cache folder on first use.

    Args:
        summarizer: optional ``LLMBackend`` that summarises the passages.
        **kwargs: passed to :class:`RetrievalExpert`.
    """
    kwargs.setdefault("name", "docs")
    kwargs.setdefault(
        "description",
        "Documentation of this assistant (mrkl): what experts are, how questions are routed, "
        "the command line, plugins, LangChain, PCW, Puzzle and FFN Fusion. Answers with passages and their files.",
    )
    kwargs.setdefault("examples", _DOCS_EXAMPLES)
    return RetrievalExpert(KB_DIR, summarizer=summarizer, **kwargs)
