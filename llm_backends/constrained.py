"""Schema-constrained decoding for local models: JSON-schema token masks and a copy bias.

:class:`JSONSchemaConstraint` is a *logits hook* for
:meth:`llm_backends.transformers_backend.TransformersBackend.generate_ids`: before every
greedy step it masks out the tokens that would leave the language of a JSON schema, so
the decoded text is always valid JSON matching the schema (types, enums, required keys,
nesting). The grammar engine is **llguidance** (Microsoft, MIT licence; the
constrained-decoding engine behind guidance and llama.cpp's and vLLM's ``guidance``
backends).

Why llguidance (tried on this machine, transformers 5.24, torch 2.13 CPU):

* ``llguidance`` 1.9: one 3 MB abi3 wheel with **no dependencies**; builds its token
  trie from the Hugging Face tokenizer directly (``llguidance.hf.from_tokenizer``);
  computes a mask in tens of microseconds; supports JSON schema (``enum``,
  ``required``, nesting, ``anyOf``) and Lark grammars that embed a schema, which is
  what lets a value start with a space. Chosen.
* ``xgrammar`` 0.2: would pull ``triton`` and ``apache-tvm-ffi`` (GPU tool chains) into
  a CPU-only environment.
* ``lm-format-enforcer`` 0.11: works, but walks the vocabulary in Python at each step
  (slow on a 49k vocabulary) and its JSON-schema support is partial.
* ``outlines`` 1.3: pulls jsonschema, pillow, outlines_core and more, and compiles a
  regex automaton per schema (seconds per new schema, and BFCL brings a new schema
  with every question).

:class:`CopyBias` adds a bonus to the logits of tokens that continue a span of a source
text (the user's question), so a number or name that appears in the question is
copied exactly as written there (a pointer-like bias in the spirit of copy mechanisms,
Gu et al., 2016, "Incorporating Copying Mechanism in Sequence-to-Sequence Learning").
It only reorders tokens the grammar allows; it never makes output invalid.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any, Callable, Sequence

from llm_backends.errors import BackendError

__all__ = ["JSONSchemaConstraint", "CopyBias", "LogitsHook", "ll_tokenizer", "number_spans"]

#: ``hook(generated_ids, logits) -> logits``: called before each greedy step with the
#: ids generated so far (not the prompt) and the next-token logits (1-D float tensor
#: of the model's vocabulary size); returns the logits to take the argmax of.
LogitsHook = Callable[[list[int], Any], Any]

_TOKENIZERS: dict[int, Any] = {}
_TOK_LOCK = threading.Lock()


def ll_tokenizer(hf_tokenizer: Any) -> Any:
    """The llguidance tokenizer of a Hugging Face fast tokenizer (built once per tokenizer, ~1 s).

    Raises:
        BackendError: llguidance is not installed or cannot read the tokenizer.
    """
    key = id(hf_tokenizer)
    with _TOK_LOCK:
        if key not in _TOKENIZERS:
            try:
                import llguidance.hf
            except ImportError as exc:  # pragma: no cover - a declared dependency
                raise BackendError("constrained decoding needs the package llguidance (pip install llguidance)") from exc
            try:
                _TOKENIZERS[key] = (hf_tokenizer, llguidance.hf.from_tokenizer(hf_tokenizer))
            except Exception as exc:  # noqa: BLE001 - any failure becomes one clear error
                raise BackendError(f"llguidance cannot use this tokenizer: {exc}") from exc
        return _TOKENIZERS[key][1]


class JSONSchemaConstraint:
    """Restrict greedy decoding to JSON text that matches a JSON schema (llguidance).

    Args:
        tokenizer: the model's Hugging Face fast tokenizer.
        schema: a JSON schema (dict). ``additionalProperties`` is set to false on every
            object that does not say otherwise, so no unknown key can be written; JSON
            whitespace is fixed to ``", "`` and ``": "`` (llguidance ``whitespace_flexible:
            false``; the separators of the router's few-shot examples), so a small model
            cannot run out its budget on newlines inside an array.
        leading_space: the value may start with one space (so a prompt can end in
            ``"key":`` and the model keeps its usual ``' "'`` / ``' 1'`` tokens).
        bias: optional extra hook applied after the mask (e.g. :class:`CopyBias`); it
            receives the text decoded so far instead of the ids.
        terminators: if given, the value must be followed by one of these literal strings
            (e.g. ``(",", "}")``), so a number ends where the model would close it
            rather than growing digit by digit; the caller strips it.

    After generation, :attr:`accepted` tells whether the text is a complete match.
    Use one instance per generation (it keeps the parser state).

    Raises:
        BackendError: the schema is not something llguidance can compile (the
            message carries llguidance's reason), or llguidance is missing.
    """

    def __init__(
        self,
        tokenizer: Any,
        schema: dict[str, Any],
        *,
        leading_space: bool = True,
        bias: Callable[[str, Any], Any] | None = None,
        terminators: Sequence[str] = (),
    ) -> None:
        import llguidance
        import llguidance.torch as lt

        self._lt = lt
        self.tokenizer = tokenizer
        self.schema = close_objects(schema)
        if isinstance(self.schema, dict):  # JSON whitespace only where the separators put it
            fixed = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
            self.schema = {**self.schema, "x-guidance": {**fixed, **self.schema.get("x-guidance", {})}}
        self.bias = bias
        self._ll = ll_tokenizer(tokenizer)
        end = (" (" + " | ".join(json.dumps(t) for t in terminators) + ")") if terminators else ""
        lark = ('start: " "? value' if leading_space else "start: value") + end + "\nvalue: %json " + json.dumps(self.schema)
        try:
            grammar = llguidance.grammar_from("lark", lark)
            is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, self._ll)
            self.matcher = llguidance.LLMatcher(self._ll, grammar)
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"cannot compile the JSON schema for constrained decoding: {exc}") from exc
        if is_error or self.matcher.is_error():
            reason = "; ".join(messages) or self.matcher.get_error()
            raise BackendError(f"cannot compile the JSON schema for constrained decoding: {reason}")
        self._mask = lt.allocate_token_bitmask(1, self._ll.vocab_size)
        self._consumed = 0
        self._ids: list[int] = []

    @property
    def accepted(self) -> bool:
        """True when the text so far is a complete value of the schema."""
        return bool(self.matcher.is_accepting())

    def __call__(self, generated: list[int], logits: Any) -> Any:
        torch = self._lt.torch
        for tok in generated[self._consumed :]:
            if not self.matcher.consume_token(tok):
                raise BackendError(f"constrained decoding: token {tok} rejected ({self.matcher.get_error()})")
            self._ids.append(tok)
        self._consumed = len(generated)
        self._lt.fill_next_token_bitmask(self.matcher, self._mask, 0)
        n = self._ll.vocab_size
        out = logits.clone()
        # The bitmask is applied with plain tensor ops: llguidance.torch's own
        # apply_token_bitmask_inplace goes through torch.compile, i.e. a C++ compiler at run
        # time and an on-disk kernel cache that concurrent processes can leave broken.
        allowed = allowed_tokens(self._mask[0], n).to(out.device)
        head = out[:n]
        head.masked_fill_(~allowed, -torch.inf)
        if out.shape[0] > n:
            out[n:] = -torch.inf
        if self.bias is not None:
            text = self.tokenizer.decode(self._ids, skip_special_tokens=True)
            out = self.bias(text, out)
        return out


def allowed_tokens(bitmask: Any, vocab_size: int) -> Any:
    """A token bitmask (int32, 32 tokens per word, bit ``i % 32`` of word ``i // 32``) as a bool tensor.

    Args:
        bitmask: 1-D int32 tensor of ``ceil(vocab_size / 32)`` words (llguidance's layout).
        vocab_size: the number of tokens.

    Returns:
        A bool tensor of shape ``(vocab_size,)``: True where the token is allowed.
    """
    import torch

    shifts = torch.arange(32, dtype=torch.int32)
    bits = (bitmask.to(torch.int32).unsqueeze(-1) >> shifts) & 1
    return bits.reshape(-1)[:vocab_size].bool()


def close_objects(schema: Any) -> Any:
    """A copy of ``schema`` with ``additionalProperties: false`` on every object with ``properties`` that does not set it.

    An object schema without ``properties`` (a free-form map, e.g. ``{"math": 90}``) stays
    open: closing it would allow only ``{}``.
    """
    if isinstance(schema, list):
        return [close_objects(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: close_objects(v) for k, v in schema.items()}
    if out.get("type") == "object" and "additionalProperties" not in out and "properties" in out:
        out["additionalProperties"] = False  # an object without properties is a free-form map: left open
    return out


_NUMBER_RE = re.compile(r"(?<![\w.^])-?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+(?![\w.]))?")


_BRACKET_LIST_RE = re.compile(r"[\[(][-+\d\s,.eE]*[\])]")


def _as_list(m: re.Match[str]) -> str:
    body = m.group()
    thousands = re.fullmatch(r"\(\s*-?\d{1,3}(?:,\d{3})+(?:\.\d+)?\s*\)", body)
    return body if thousands else body.replace(",", ";")


def unpack_number_lists(text: str) -> str:
    """``text`` with the commas of bracketed number lists made ``;`` (same length, offsets kept).

    ``"[200,300,400]"`` is three numbers (a list, as Python and JSON write one), not
    200300400 with thousands separators; in parentheses only where it cannot be one
    number: ``"(3,4)"`` and ``"(1, 500)"`` are lists, ``"(1,500,000)"`` is 1500000.
    """
    return _BRACKET_LIST_RE.sub(_as_list, text)


def number_spans(text: str) -> list[str]:
    """Numbers as written in ``text`` (thousands separators dropped): ``"b=-3, 1,500 and 9.8, 1e-9"`` → ``['-3', '1500', '9.8', '1e-9']``;
    a bracketed list is its items: ``"[200,300]"`` → ``['200', '300']``."""
    return [m.group().replace(",", "") for m in _NUMBER_RE.finditer(unpack_number_lists(text))]


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


class CopyBias:
    """Bias decoding toward copying spans of a source text (the user's question).

    Args:
        encode: text → token ids (no special tokens), the model's tokenizer.
        source: the text to copy from.
        mode: ``"string"`` (the value is a JSON string, possibly nested: the part after
            the last unclosed quote is matched against word-start spans of the
            source), ``"number"`` (the value is a number: its text is matched
            against the numbers written in the source, see :func:`number_spans`) or
            ``"json"`` (any JSON: string rules inside a string, number rules inside a
            number once its first digit is written).
        bonus: logit bonus (natural-log units) for a token that continues a span.
        end_ids: tokens that end the value (closing quote, end of sequence); they get the
            bonus where a span may end (at a word boundary of the source / the end of a number).
        used_numbers: numbers (as written) already taken by other arguments; each use
            removes one occurrence from the number spans, so the bias prefers the
            numbers not used yet.
        first_bonus: extra bonus for the first remaining number span in the source's order
            (arguments tend to take the question's numbers in order); in a string, for
            the first token of a quoted span of the source where the value starts (a name
            the question puts in quotes, "the game 'Ticket to Ride'", is a value).
        numbers: the number spans to copy, in the source's order, as JSON number text;
            default :func:`number_spans` of ``source`` (a caller may pass normalised
            numbers, e.g. ``"1 million"`` read as ``"1000000"``).
        number_items: ``"json"`` mode for an array of numbers: the bias also proposes a
            question number where an item starts (after ``[`` or ``,``), the first one not
            yet written in the array getting ``first_bonus``.
        used_strings: string values other arguments already took; a span of the source
            that starts with one of them (case-insensitive, 2+ characters) is not proposed
            where a string value starts, so two arguments do not copy the same span
            ("sequence" and "reference_sequence" from two DNA strings).

    Call: ``bias(text_so_far, logits) -> logits`` (1-D tensor; a copy is changed).
    """

    def __init__(
        self,
        encode: Callable[[str], list[int]],
        source: str,
        *,
        mode: str = "string",
        bonus: float = 4.0,
        end_ids: Sequence[int] = (),
        used_numbers: Sequence[str] = (),
        first_bonus: float = 0.0,
        numbers: Sequence[str] | None = None,
        number_items: bool = False,
        used_strings: Sequence[str] = (),
    ) -> None:
        if mode not in ("string", "number", "json"):
            raise ValueError(f"mode must be 'string', 'number' or 'json', got {mode!r}")
        self.encode = encode
        self.source = source
        self.mode = mode
        self.bonus = bonus
        self.end_ids = list(end_ids)
        self._first: dict[str, int | None] = {}
        self.spans = list(numbers) if numbers is not None else number_spans(source)
        self.number_items = number_items
        for u in used_numbers:
            for i, sp in enumerate(self.spans):
                if _same_number(sp, u):
                    del self.spans[i]
                    break
        self.first_bonus = first_bonus
        def word_start(i: int) -> bool:  # a word right after an opening quote starts one; the "s" of "user's" does not
            if i == 0:
                return True
            before = source[i - 1]
            if before.isalnum() or before == "_":
                return False
            return not (before in "'’" and i >= 2 and source[i - 2].isalnum())

        self.starts = [m.start() for m in re.finditer(r"[\w$€£-]", source) if word_start(m.start())]
        self._quoted = {i for i in self.starts if i > 0 and source[i - 1] in "'\"‘“"}
        taken = [u.strip().lower() for u in used_strings if isinstance(u, str) and len(u.strip()) >= 2]
        low = source.lower()
        self._fresh_starts = [i for i in self.starts if not any(low.startswith(u, i) for u in taken)]

    def _first_token(self, text: str) -> int | None:
        if text not in self._first:
            ids = self.encode(text)
            self._first[text] = ids[0] if ids else None
        return self._first[text]

    def _current(self, text: str, mode: str) -> str | None:
        """The part of the value being written that should match the source, or None if not inside one."""
        if mode == "number":
            m = re.search(r"-?[\d.]*(?:(?<=\d)[eE][-+]?\d*)?$", text)
            return m.group() if m else ""
        inside, start, esc = False, 0, False
        for i, ch in enumerate(text):
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                inside, start = (not inside), i + 1
        return text[start:] if inside else None

    def continuations(self, text: str) -> tuple[set[int], bool]:
        """(tokens that continue a source span after ``text``, whether a span may end here)."""
        self._first_toks: set[int] = set()
        mode = self.mode
        if mode == "json":  # inside a string: string spans; in a started number: number spans
            if self._current(text, "string") is not None:
                mode = "string"
            elif re.search(r"[\s:\[,]-?\d[\d.]*(?:[eE][-+]?\d*)?$", text):
                mode = "number"
            elif self.number_items and re.search(r"(?:^\s?\[|,\s?)$", text):
                mode = "number"  # an array of numbers: the next item may start with a question number
            else:
                return set(), False
        cur = self._current(text, mode)
        if cur is None:
            return set(), False
        toks: set[int] = set()
        can_end = False
        if mode == "number":
            spans = list(self.spans)
            if self.mode == "json":  # numbers already written in this value (earlier list items) are used
                for done in number_spans(text[: len(text) - len(cur)]):
                    for i, sp in enumerate(spans):
                        if _same_number(sp, done):
                            del spans[i]
                            break
            for k, span in enumerate(spans):
                if span.startswith(cur):
                    rest = span[len(cur) :]
                    if rest:
                        firsts = [self._first_token(rest)]
                        if not text or self.mode == "json" and not cur:  # the number may start with its space
                            firsts.append(self._first_token(" " + rest))
                        for t in firsts:
                            if t is not None:
                                toks.add(t)
                                if k == 0:  # the first unused number keeps its extra bonus to its end
                                    self._first_toks.add(t)
                    elif cur:
                        can_end = True
            return toks, can_end
        src = self.source
        positions = self._fresh_starts if not cur else [i for i in self.starts if src.startswith(cur, i)]
        for i in positions:
            j = i + len(cur)
            rest = src[j : j + 24]
            if cur and (j >= len(src) or not (src[j].isalnum())):
                can_end = True
            if rest:
                t = self._first_token(rest)
                if t is not None:
                    toks.add(t)
                    if not cur and i in self._quoted:
                        self._first_toks.add(t)  # a quoted name starts here: first_bonus on top
        return toks, can_end

    def __call__(self, text: str, logits: Any) -> Any:
        toks, can_end = self.continuations(text)
        if not toks and not can_end:
            return logits
        out = logits.clone()
        for t in toks:
            if t < out.shape[0]:
                out[t] += self.bonus
        if self.first_bonus:
            for first in getattr(self, "_first_toks", ()):
                if first < out.shape[0]:
                    out[first] += self.first_bonus
        if can_end:
            for t in self.end_ids:
                if t < out.shape[0]:
                    out[t] += self.bonus
        return out
