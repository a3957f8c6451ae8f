"""Parallel Context Windows: semantics pinned on a tiny random Llama, one check on SmolLM2."""

from __future__ import annotations

import pytest
import torch

from llm_backends import pcw
from llm_backends.errors import BackendError

BOS = 1
# float32 throughout; cached vs single-pass recipes differ only by summation order
ATOL = 1e-5


def tiny_llama(attn: str = "sdpa"):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as in SmolLM2
        max_position_embeddings=256,
        bos_token_id=BOS,
        eos_token_id=2,
        pad_token_id=0,
    )
    cfg._attn_implementation = attn
    model = LlamaForCausalLM(cfg).eval()
    return model


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def model(request):
    return tiny_llama(request.param)


W1 = [5, 6, 7, 8, 9, 10, 11]
W2 = [12, 13, 14]
W3 = [20, 21, 22, 23, 24]
TASK = [30, 31, 32, 33]


def plain_logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


def encode(model, windows, bos=BOS):
    with torch.inference_mode():
        return pcw.encode_windows(model, windows, bos_id=bos, max_context=256)


def test_one_window_equals_the_ordinary_forward(model):
    ctx = encode(model, [W1])
    assert ctx.lengths == [1 + len(W1)] and ctx.cached_tokens == 1 + len(W1)
    with torch.inference_mode():
        logits, cache, pos = pcw.task_forward(model, ctx, TASK)
    ref = plain_logits(model, [BOS] + W1 + TASK)[-len(TASK) :]
    assert torch.allclose(logits, ref, atol=ATOL), float((logits - ref).abs().max())
    assert pos.tolist() == [[8, 9, 10, 11]]
    assert cache.get_seq_length() == 1 + len(W1) + len(TASK)


def test_one_window_without_bos_equals_the_ordinary_forward(model):
    ctx = encode(model, [W1], bos=None)
    assert ctx.cached_tokens == len(W1) and ctx.max_window_length == len(W1)
    with torch.inference_mode():
        logits, _, _ = pcw.task_forward(model, ctx, TASK)
    ref = plain_logits(model, W1 + TASK)[-len(TASK) :]
    assert torch.allclose(logits, ref, atol=ATOL)


def test_changing_window_1_leaves_window_2_keys_and_values_unchanged(model):
    a = encode(model, [W1, W2])
    b = encode(model, [[40, 41, 42, 43, 44, 45, 46, 47, 48], W2])
    for (ka, va), (kb, vb) in zip(a.window_kv[1], b.window_kv[1]):
        assert torch.equal(ka, kb) and torch.equal(va, vb)
    # and window 1's own entries did change, so the comparison is not vacuous
    assert not torch.equal(a.window_kv[0][0][0][:, :, :3], b.window_kv[0][0][0][:, :, :3])
    # the shared BOS is kept once and is the same whatever the windows hold
    assert a.cached_tokens == 1 + len(W1) + len(W2)
    for (ka, va), (kb, vb) in zip(a.bos_kv, b.bos_kv):
        assert torch.equal(ka, kb) and torch.equal(va, vb)
    # the task sees both windows: its logits differ
    with torch.inference_mode():
        la = pcw.task_forward(model, a, TASK)[0]
        lb = pcw.task_forward(model, b, TASK)[0]
    assert (la - lb).abs().max() > 1e-3


def test_window_2_keys_equal_its_own_ordinary_encoding(model):
    ctx = encode(model, [W1, W2])
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([[BOS] + W2]), use_cache=True)
    for (k, v), layer in zip(ctx.window_kv[1], out.cache.layers):
        assert torch.allclose(k, layer.keys[:, :, 1:], atol=ATOL)
        assert torch.allclose(v, layer.values[:, :, 1:], atol=ATOL)


def test_task_position_ids_start_at_the_longest_window(model):
    ctx = encode(model, [W2, W1, W3])
    w = 1 + max(len(W1), len(W2), len(W3))
    assert ctx.max_window_length == w
    seen: list[list[int]] = []
    def record(_module, args, kwargs, _out):
        seen.append((kwargs.get("position_ids") if "position_ids" in kwargs else args[1])[0].tolist())

    hook = model.model.rotary_emb.register_forward_hook(record, with_kwargs=True)
    try:
        with torch.inference_mode():
            pcw.task_forward(model, ctx, TASK)
            pcw.greedy_generate(
                model, _Tok(), ctx, TASK, max_new_tokens=3, eos_ids=set(), max_context=256
            )
    finally:
        hook.remove()
    assert seen[0] == list(range(w, w + len(TASK)))
    # generation: the task again, then one position per new token
    assert seen[1] == list(range(w, w + len(TASK)))
    assert seen[2:] == [[w + len(TASK)], [w + len(TASK) + 1]]


@pytest.mark.parametrize("windows", [[W1], [W1, W2], [W2, W1, W3]])
def test_cached_recipe_equals_single_pass_4d_mask(model, windows):
    ctx = encode(model, windows)
    with torch.inference_mode():
        cached = pcw.task_forward(model, ctx, TASK)[0]
        single = pcw.single_pass_logits(model, windows, TASK, bos_id=BOS)
    # tolerance: float32, max |Δlogit| ≤ 1e-5 (observed ~1e-6)
    assert torch.allclose(cached, single, atol=ATOL), float((cached - single).abs().max())


def test_eager_attention_with_a_boolean_4d_mask_is_silently_wrong():
    """Why the masks here are additive floats: eager attention adds the mask to the scores."""
    model = tiny_llama("eager")
    ids = [BOS] + W1 + TASK
    n = len(ids)
    allowed = torch.tril(torch.ones(n, n, dtype=torch.bool))
    floatmask = torch.zeros(n, n).masked_fill_(~allowed, torch.finfo(torch.float32).min)
    with torch.inference_mode():
        ref = model(input_ids=torch.tensor([ids])).logits[0]
        good = model(input_ids=torch.tensor([ids]), attention_mask=floatmask[None, None]).logits[0]
        bad = model(input_ids=torch.tensor([ids]), attention_mask=allowed[None, None]).logits[0]
    assert torch.allclose(good, ref, atol=ATOL)
    assert (bad - ref).abs().max() > 1e-2


def test_position_ids_left_out_are_wrong_for_pcw(model):
    """Why position ids are explicit: left out, the model counts from the cache length L, not from W."""
    ctx = encode(model, [W1, W3])
    with torch.inference_mode():
        right = pcw.task_forward(model, ctx, TASK)[0]
        wrong = model(
            input_ids=torch.tensor([TASK]), attention_mask=torch.ones(1, ctx.cached_tokens + len(TASK), dtype=torch.long),
            cache=pcw.context_cache(model, ctx), use_cache=True,
        ).logits[0]
    assert ctx.cached_tokens > ctx.max_window_length
    # the random tiny model is weakly position-sensitive (~5e-4); numerical noise is ~1e-6
    assert (right - wrong).abs().max() > 1e-4


class _Tok:
    def decode(self, ids, skip_special_tokens=True):
        return " ".join(str(i) for i in ids)


def test_greedy_generation_with_one_window_equals_ordinary_greedy(model):
    ctx = encode(model, [W1])
    with torch.inference_mode():
        text = pcw.greedy_generate(model, _Tok(), ctx, TASK, max_new_tokens=6, eos_ids=set(), max_context=256)
    ids = [BOS] + W1 + TASK
    expected = []
    for _ in range(6):
        nxt = int(plain_logits(model, ids)[-1].argmax())
        expected.append(nxt)
        ids.append(nxt)
    assert text == " ".join(map(str, expected))


def test_greedy_generation_stops_at_a_stop_string_and_eos(model):
    ctx = encode(model, [W1, W2])
    with torch.inference_mode():
        full = pcw.greedy_generate(model, _Tok(), ctx, TASK, max_new_tokens=5, eos_ids=set(), max_context=256)
        first = int(full.split()[0])
        cut = pcw.greedy_generate(model, _Tok(), ctx, TASK, max_new_tokens=5, eos_ids=set(), stop=(full.split()[1],), max_context=256)
        none = pcw.greedy_generate(model, _Tok(), ctx, TASK, max_new_tokens=5, eos_ids={first}, max_context=256)
    assert len(full.split()) == 5
    assert cut.strip() == str(first) or cut.startswith(str(first))
    assert none == ""


LABELS = [[5], [5, 6], [5, 6, 7], [8, 9], [8, 10, 11]]


def brute_label_logprob(model, windows, task, label):
    logits = pcw.single_pass_logits(model, windows, task + label[:-1], bos_id=BOS)
    logp = torch.log_softmax(logits[len(task) - 1 :], dim=-1)
    return float(sum(logp[i, t] for i, t in enumerate(label)))


def test_label_trie_lists_internal_nodes_and_allowed_tokens():
    trie = pcw.LabelTrie(LABELS)
    # internal nodes: (5), (5,6), (8), (8,10)
    assert [(tok, d) for _p, tok, d in trie.nodes] == [(5, 1), (8, 1), (6, 2), (10, 2)]
    assert trie.allowed[-1] == {5, 8}
    assert trie.allowed[0] == {6} and trie.allowed[1] == {9, 10} and trie.allowed[3] == {11}
    assert trie.paths[2] == [0, 2] and trie.paths[0] == []


@pytest.mark.parametrize("windows", [[W1], [W1, W2, W3]])
def test_label_logprobs_equal_brute_force_scoring(model, windows):
    ctx = encode(model, windows)
    trie = pcw.LabelTrie(LABELS)
    with torch.inference_mode():
        got = pcw.label_logprobs(model, ctx, TASK, trie)
        want = [brute_label_logprob(model, windows, TASK, lab) for lab in LABELS]
    assert torch.allclose(got, torch.tensor(want), atol=1e-4), (got, want)


def test_first_token_pruning_scores_kept_labels_exactly(model):
    ctx = encode(model, [W1, W2])
    trie = pcw.LabelTrie(LABELS)
    with torch.inference_mode():
        full = pcw.label_logprobs(model, ctx, TASK, trie)
        first = torch.log_softmax(pcw.task_forward(model, ctx, TASK)[0][-1], -1)
        pruned = pcw.label_logprobs(model, ctx, TASK, trie, top_first=1)
        # a bias that reverses the ranking keeps the other subtree as well
        other = 8 if first[5] > first[8] else 5
        biased = pcw.label_logprobs(model, ctx, TASK, trie, top_first=1, first_bias={other: 100.0})
        unbiased = pcw.label_logprobs(model, ctx, TASK, trie, top_first=1, first_bias={other: -100.0})
    best = 5 if first[5] > first[8] else 8
    for got, keep in ((pruned, {best}), (biased, {best, other}), (unbiased, {best})):
        for i, lab in enumerate(LABELS):
            if lab[0] in keep:
                assert float(got[i]) == pytest.approx(float(full[i]), abs=1e-5)
            else:
                assert got[i] == float("-inf")
    assert torch.equal(pcw.label_logprobs(model, ctx, TASK, trie, top_first=2), full)


@pytest.mark.parametrize("top_first", [None, 1])
def test_batched_classification_equals_one_task_at_a_time(model, top_first):
    ctx = encode(model, [W1, W2, W3])
    trie = pcw.LabelTrie(LABELS)
    tasks = [TASK, [34, 35], [36], [37, 38, 39, 40, 41]]
    names = list("abcde")
    batch = pcw.classify_batch(model, ctx, tasks, names, trie, content_free_tasks=[[3]], top_first=top_first)
    for task, got in zip(tasks, batch):
        one = pcw.classify(model, ctx, task, names, trie, content_free_tasks=[[3]], top_first=top_first)
        assert got.logprobs == pytest.approx(one.logprobs, abs=1e-4)
        assert got.probs == pytest.approx(one.probs, abs=1e-5)
        assert got.best == one.best and got.calibrated
    with pytest.raises(BackendError):
        pcw.classify_batch(model, ctx, [TASK, []], names, trie)


def test_windows_are_not_reencoded_per_question(model):
    ctx = encode(model, [W1, W2, W3])
    trie = pcw.LabelTrie(LABELS)
    lengths: list[int] = []
    hook = model.register_forward_pre_hook(lambda m, args, kw: lengths.append(kw["input_ids"].shape[1]), with_kwargs=True)
    try:
        with torch.inference_mode():
            for task in (TASK, [34, 35], [36]):
                pcw.classify(model, ctx, task, ["a", "b", "c", "d", "e"], trie, content_free_tasks=[[3]])
    finally:
        hook.remove()
    # the content-free task once (1 token + 4 trie nodes), then per question: task + 4 trie nodes
    assert lengths == [1, 4, 4, 4, 2, 4, 1, 4]


def test_contextual_calibration_divides_by_content_free_probabilities(model):
    ctx = encode(model, [W1, W2])
    trie = pcw.LabelTrie(LABELS)
    names = ["a", "b", "c", "d", "e"]
    with torch.inference_mode():
        raw = pcw.classify(model, ctx, TASK, names, trie)
        cal = pcw.classify(model, ctx, TASK, names, trie, content_free_tasks=[[3], [4]])
        cf = [torch.softmax(pcw.label_logprobs(model, ctx, t, trie), -1) for t in ([3], [4])]
    assert not raw.calibrated and cal.calibrated and cal.num_windows == 2
    assert raw.logprobs == pytest.approx(cal.logprobs)
    p_cf = (cf[0] + cf[1]) / 2
    expected = torch.softmax(torch.tensor(raw.logprobs), -1) / p_cf
    expected = expected / expected.sum()
    assert cal.probs == pytest.approx(expected.tolist(), abs=1e-5)
    assert cal.content_free_probs == pytest.approx(p_cf.tolist(), abs=1e-6)
    assert sum(cal.probs) == pytest.approx(1.0)
    # calibrating by the content-free input itself gives a uniform distribution
    with torch.inference_mode():
        self_cal = pcw.classify(model, ctx, [3], names, trie, content_free_tasks=[[3]])
    assert self_cal.probs == pytest.approx([0.2] * 5, abs=1e-5)


def test_parallel_ensemble_averages_per_window_label_logprobs(model):
    windows = [W1, W2, W3]
    ctx = encode(model, windows)
    trie = pcw.LabelTrie(LABELS)
    names = list("abcde")
    with torch.inference_mode():
        ens = pcw.ensemble_classify(model, ctx, TASK, names, trie)
        per = [torch.log_softmax(pcw.label_logprobs(model, encode(model, [w]), TASK, trie), -1) for w in windows]
        weighted = pcw.ensemble_classify(model, ctx, TASK, names, trie, weights=[1, 0, 0])
    assert ens.logprobs == pytest.approx((sum(per) / 3).tolist(), abs=1e-5)
    assert weighted.logprobs == pytest.approx(per[0].tolist(), abs=1e-5)
    with pytest.raises(ValueError):
        pcw.ensemble_classify(model, ctx, TASK, names, trie, weights=[1, 1])


def test_subset_shares_tensors_and_matches_a_fresh_encoding(model):
    ctx = encode(model, [W1, W2, W3])
    sub = ctx.subset([2, 0])
    fresh = encode(model, [W3, W1])
    with torch.inference_mode():
        a = pcw.task_forward(model, sub, TASK)[0]
        b = pcw.task_forward(model, fresh, TASK)[0]
    assert torch.allclose(a, b, atol=ATOL)
    assert sub.window_kv[0] is ctx.window_kv[2]
    with pytest.raises(ValueError):
        ctx.subset([3])
    with pytest.raises(ValueError):
        ctx.subset([])


def test_bad_input_gives_clear_errors(model):
    with pytest.raises(BackendError, match="at least one"):
        encode(model, [])
    with pytest.raises(BackendError, match="window 1 is empty"):
        encode(model, [W1, []])
    with pytest.raises(BackendError, match="more than the model's context"):
        with torch.inference_mode():
            pcw.encode_windows(model, [list(range(3, 40))], bos_id=BOS, max_context=16)
    ctx = encode(model, [W1])
    with pytest.raises(BackendError, match="empty PCW task"):
        pcw.task_forward(model, ctx, [])
    with pytest.raises(BackendError, match="exceed the model's context"):
        pcw.greedy_generate(model, _Tok(), ctx, TASK, max_new_tokens=300, eos_ids=set(), max_context=256)
    with pytest.raises(BackendError, match="same tokens"):
        pcw.LabelTrie([[5, 6], [5, 6]])
    with pytest.raises(BackendError, match="no tokens"):
        pcw.LabelTrie([[5], []])


def test_sliding_window_models_are_refused():
    from transformers import MistralConfig, MistralForCausalLM

    cfg = MistralConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, sliding_window=8,
    )
    with pytest.raises(BackendError, match="full attention"):
        encode(MistralForCausalLM(cfg).eval(), [W1])


# ------------------------------------------------------------------ real model
@pytest.mark.slow
def test_smollm2_pcw_matches_ordinary_scoring_and_generates(smollm2):
    backend = smollm2
    window = "Question: my card has not arrived yet\nIntent: card arrival\n\nQuestion: what is the exchange rate?\nIntent: exchange rate\n\n"
    other = "Question: I want a refund\nIntent: request refund\n\n"
    task = "Question: when will my card arrive?\nIntent:"
    labels = [" card arrival\n", " exchange rate\n", " request refund\n"]
    ctx1 = backend.pcw_context([window])
    one = backend.pcw_classify(ctx1, task, labels)
    # the same token ids as one ordinary sequence (text concatenation would tokenise "\n\nQuestion" differently)
    prefix = [backend.tokenizer.bos_token_id] + backend.encode(window) + backend.encode(task)
    ref = []
    with torch.inference_mode():
        for lab in labels:
            ids = backend.encode(lab)
            logits = backend.model(input_ids=torch.tensor([prefix + ids])).logits[0, len(prefix) - 1 : -1].float()
            ref.append(float(torch.log_softmax(logits, -1)[torch.arange(len(ids)), torch.tensor(ids)].sum()))
    assert one.logprobs == pytest.approx(ref, abs=2e-3)
    ctx = backend.pcw_context([window, other])
    assert ctx.num_windows == 2 and ctx.max_window_length == 1 + backend.count_tokens(window)
    res = backend.pcw_classify(ctx, task, labels)
    # windows are parallel: their order does not matter (up to float summation order)
    swapped = backend.pcw_classify(backend.pcw_context([other, window]), task, labels)
    assert res.logprobs == pytest.approx(swapped.logprobs, abs=1e-3)
    # ... and differ from one window holding both texts
    joined = backend.pcw_classify(backend.pcw_context([window + other]), task, labels)
    assert max(abs(a - b) for a, b in zip(res.logprobs, joined.logprobs)) > 0.5
    cal = backend.pcw_classify(ctx, task, labels, content_free=["Question: N/A\nIntent:"])
    assert cal.calibrated and sum(cal.probs) == pytest.approx(1.0, abs=1e-5)
    assert cal.logprobs == pytest.approx(res.logprobs, abs=1e-4)
    ens = backend.pcw_classify(ctx, task, labels, ensemble=True)
    assert ens.num_windows == 2 and sum(ens.probs) == pytest.approx(1.0, abs=1e-5)
    # free generation on one window equals ordinary greedy decoding of the same ids
    text = backend.pcw_generate(ctx1, task, max_new_tokens=8, stop=("\n",))
    assert text == backend.generate_ids(prefix, max_new_tokens=8, stop=("\n",))
    assert text.strip()
