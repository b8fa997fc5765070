"""Training through every block faster (issue 15): packing, lora:blocks=N, --compile.

Each speed-up must leave the result as it was: packed batches give the unpacked logits and
gradients, adapters on the top blocks use the frozen-trunk cache exactly, compiled blocks give
the eager blocks' outputs, and frozen weights never get a gradient.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import Collect, tiny_config, write_topic_csv

from llmclf import Trainer
from llmclf.errors import ConfigError
from llmclf.models.classifier import SequenceClassifier
from llmclf.models.gpt2 import GPT2, GPT2Config
from llmclf.models.llama import Llama, LlamaConfig
from llmclf.models.lora import add_lora
from llmclf.models.packing import pack
from llmclf.models.qwen3 import Qwen3, Qwen3Config
from llmclf.models.trainable import apply_trainable
from llmclf.training.trunk_cache import TrunkCache

LENGTHS = [5, 12, 3, 7, 12, 1, 9, 2]


def _backbone(family: str) -> torch.nn.Module:
    if family == "gpt2":
        return GPT2(GPT2Config(vocab_size=97, context_length=32, n_embd=32, n_layer=3, n_head=4))
    # grouped-query attention (2 key/value heads for 4 query heads) and a 12-token context: a
    # packed row is wider than the context, while each text's positions stay inside it
    fields = {"vocab_size": 97, "hidden_size": 32, "intermediate_size": 48}
    fields |= {"num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2}
    fields |= {"head_dim": 8, "max_position_embeddings": 12, "rope_theta": 100.0}
    if family == "qwen3":
        return Qwen3(Qwen3Config(**fields))
    return Llama(LlamaConfig(**fields))


def _model(
    pooling: str, dtype: torch.dtype = torch.float32, family: str = "gpt2"
) -> SequenceClassifier:
    torch.manual_seed(0)
    model = SequenceClassifier(_backbone(family), 3, pooling).to(dtype)
    add_lora(model.backbone, r=2, alpha=4.0)
    with torch.no_grad():  # adapters that change the outputs, so their gradients are not trivial
        for name, param in model.named_parameters():
            if name.endswith("lora_B"):
                param.normal_(std=0.05)
    return model


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor(LENGTHS)
    ids = torch.randint(
        0, 96, (len(LENGTHS), max(LENGTHS)), generator=torch.Generator().manual_seed(1)
    )
    for row, n in enumerate(LENGTHS):
        ids[row, n:] = 96  # right padding
    return ids, lengths


def _logits_and_grads(model: SequenceClassifier, packed: bool):
    ids, lengths = _batch()
    logits = model.forward_packed(pack(ids, lengths)) if packed else model(ids, lengths)
    grads = torch.autograd.grad(logits.square().sum(), list(model.parameters()))
    return logits, grads


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen3"])
@pytest.mark.parametrize("pooling", ["last-token", "first", "mean"])
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_a_packed_batch_gives_the_unpacked_logits_and_gradients(
    family: str, pooling: str, dtype: torch.dtype, tolerance: float
) -> None:
    model = _model(pooling, dtype, family)
    plain, plain_grads = _logits_and_grads(model, packed=False)
    packed, packed_grads = _logits_and_grads(model, packed=True)
    assert pack(*_batch()).input_ids.shape == (1, sum(LENGTHS))  # one row of the real tokens
    scale = plain.abs().max()
    assert (packed - plain).abs().max() <= tolerance * scale
    # relative to each gradient, floored at 1% of the largest: some are zero in exact
    # arithmetic and rounding noise on both sides ('first' pooling: the first token attends to
    # itself alone, so its query and key get no gradient)
    floor = 1e-2 * max(g.abs().max() for g in plain_grads)
    for a, b in zip(plain_grads, packed_grads, strict=True):
        assert (a - b).abs().max() <= tolerance * max(a.abs().max(), floor)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("pooling", ["last-token", "first", "mean"])
def test_packed_states_from_a_cached_layer_give_the_unpacked_logits(
    family: str, pooling: str
) -> None:
    model = _model(pooling, torch.float64, family)
    ids, lengths = _batch()
    packed = pack(ids, lengths)
    with torch.no_grad():
        want = model(ids, lengths)
        for start_layer in range(len(model.backbone.h) + 1):  # a cache after each block
            hidden = model.trunk(ids, start_layer)  # (B, T, C), as the cache holds it
            row = torch.zeros(*packed.input_ids.shape, hidden.shape[-1], dtype=hidden.dtype)
            for i, n in enumerate(lengths.tolist()):  # text i at its packed column
                start = packed.starts[i]
                row[0, start : start + n] = hidden[i, :n]
            got = model.forward_packed(packed, row, start_layer)
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_a_packed_text_does_not_depend_on_its_neighbours(family: str) -> None:
    model = _model("last-token", family=family)
    ids, lengths = _batch()
    with torch.no_grad():
        together = model.forward_packed(pack(ids, lengths))
        alone = torch.cat(
            [
                model.forward_packed(pack(ids[i : i + 1], lengths[i : i + 1]))
                for i in range(len(ids))
            ]
        )
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)


def test_a_packed_row_holds_each_texts_tokens_in_order_with_their_own_positions() -> None:
    ids, lengths = _batch()
    packed = pack(ids, lengths)
    assert torch.equal(packed.lengths, lengths) and torch.equal(packed.spans, lengths)
    for i, n in enumerate(LENGTHS):
        start = int(packed.starts[i])
        assert torch.equal(packed.input_ids[0, start : start + n], ids[i, :n])
        assert packed.positions[0, start : start + n].tolist() == list(range(n))
        assert packed.segments[0, start : start + n].tolist() == [i] * n
    # a query sees its own text up to itself, nothing of the neighbours'
    keys, seen = packed.keys(packed.pooled_columns("last-token"))
    assert seen.sum(1).tolist() == LENGTHS
    assert keys[seen].tolist() == list(range(sum(LENGTHS)))  # every text's own columns


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("pooling", ["last-token", "first", "mean"])
def test_a_row_ending_in_fill_gives_the_logits_of_the_exact_row(family: str, pooling: str) -> None:
    from llmclf.models.packing import ladder_width

    model = _model(pooling, torch.float64, family)
    ids, lengths = _batch()
    width = ladder_width(sum(LENGTHS) + 3)  # 54 -> 56: the row ends in 5 fill tokens
    filled = pack(ids, lengths, width)
    assert filled.input_ids.shape == (1, width) and filled.spans.tolist() == [*LENGTHS, 5]
    with torch.no_grad():
        want = model.forward_packed(pack(ids, lengths))
        torch.testing.assert_close(model.forward_packed(filled), want, rtol=1e-10, atol=1e-10)
        hidden = model.trunk(ids, 2)  # states cached after block 2, read into either row
        states = [hidden[i, :n] for i, n in enumerate(LENGTHS)]
        cache = TrunkCache(
            end_layer=2,
            data=torch.cat([*states, hidden.new_zeros(1, hidden.shape[-1])]),
            offsets=torch.cumsum(lengths, 0) - lengths,
            lengths=lengths,
        )
        texts, cpu = list(range(len(LENGTHS))), torch.device("cpu")
        exact = model.forward_packed(
            pack(ids, lengths), cache.assemble_packed(texts, pack(ids, lengths), cpu).double(), 2
        )
        row = cache.assemble_packed(texts, filled, cpu).double()
        assert not row[0, sum(LENGTHS) :].any()  # the fill reads the zero row
        got = model.forward_packed(filled, row, 2)
        torch.testing.assert_close(got, exact, rtol=1e-10, atol=1e-10)


def test_ladder_widths_are_few_and_waste_at_most_an_eighth() -> None:
    from llmclf.models.packing import ladder_width

    widths = {ladder_width(n) for n in range(1, 20_001)}
    assert len(widths) < 110  # 20,000 possible row widths become about 8 per power of two
    assert all(n <= ladder_width(n) <= n * 9 / 8 for n in range(1, 20_001))


def test_attention_within_texts_equals_a_block_diagonal_causal_mask() -> None:
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    from llmclf.models.attention import attend_within_texts

    torch.manual_seed(0)
    W = sum(LENGTHS)
    q, k, v = torch.randn(3, 1, 4, W, 8, dtype=torch.float64).unbind(0)
    segments = pack(*_batch()).segments[0]
    mask = (segments[:, None] == segments[None, :]) & torch.ones(W, W, dtype=torch.bool).tril()
    want = sdpa(q, k, v, attn_mask=mask)
    got = attend_within_texts(q, k, v, torch.tensor(LENGTHS))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def _fit(tmp_path: Path, name: str, **changes) -> tuple[list[dict], dict, Collect]:
    data = write_topic_csv(tmp_path / "d.csv", rows_per_class=20)
    config = tiny_config(data, tmp_path / name, batch_size=8, eval_every=2, epochs=1, **changes)
    reporter = Collect()
    run = Trainer(config, reporter=reporter).fit()
    return run.history, run.metrics, reporter


def _same_run(a: tuple, b: tuple, tolerance: float = 1e-4) -> None:
    (history_a, metrics_a, _), (history_b, metrics_b, _) = a, b
    assert len(history_a) == len(history_b) > 2
    for x, y in zip(history_a, history_b, strict=True):
        for key in ("train_loss", "val_loss"):
            assert x[key] == pytest.approx(y[key], abs=tolerance), (key, x, y)
    assert metrics_a["test"]["accuracy"] == metrics_b["test"]["accuracy"]


@pytest.mark.parametrize(
    ("backbone", "trainable"),
    [("gpt2-tiny", "all"), ("gpt2-tiny", "lora:r=4,alpha=8"), ("qwen3-tiny", "all")],
)
def test_training_with_pack_gives_the_losses_of_training_without(
    tmp_path: Path, backbone: str, trainable: str
) -> None:
    packed = _fit(tmp_path, "packed", backbone=backbone, trainable=trainable, pack=True)
    plain = _fit(tmp_path, "plain", backbone=backbone, trainable=trainable)
    # Adam's first step divides each gradient element by its own size, so elements that are
    # near zero (Qwen3's per-head norms make many) turn float rounding into ~1e-4 of loss
    _same_run(packed, plain, tolerance=1e-3 if backbone == "qwen3-tiny" else 1e-4)


@pytest.mark.parametrize(("precision", "laddered"), [("fp32", False), ("bf16", True)])
def test_reduced_precision_packs_rows_of_ladder_widths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, precision: str, laddered: bool
) -> None:
    """bf16 autocast on a CPU compiles its kernels per shape: rows take few widths there."""
    import llmclf.training.loop as loop
    from llmclf.models.packing import ladder_width

    rows: list[tuple[int, int]] = []  # (real tokens, row width)

    def recording_pack(ids, lengths, width=None):
        packed = pack(ids, lengths, width)
        rows.append((int(lengths.sum()), packed.input_ids.shape[1]))
        return packed

    monkeypatch.setattr(loop, "pack", recording_pack)
    _fit(tmp_path, precision, pack=True, precision=precision)
    assert rows
    expected = [(n, ladder_width(n) if laddered else n) for n, _ in rows]
    assert rows == expected


@pytest.mark.parametrize("pooling", ["last", "mean-all"])
def test_pack_refuses_a_pooling_that_reads_padding_in_one_line(tmp_path: Path, pooling) -> None:
    # the default per-batch padding: the refusal names --pack before the padding's own rule
    config = tiny_config(tmp_path / "d.csv", pack=True, pooling=pooling)
    with pytest.raises(ConfigError, match=rf"^pack: '{pooling}' pooling .* drop --pack$"):
        Trainer(config).fit()


def test_pack_refuses_bidirectional_attention(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "d.csv", pack=True, attention="bidirectional")
    with pytest.raises(ConfigError, match=r"^pack: .*--attention bidirectional cannot be packed"):
        Trainer(config).fit()


def test_pack_refuses_a_backbone_that_cannot_take_packed_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Llama, "packs", False)  # as a plugin architecture that does not declare it
    config = tiny_config(tmp_path / "d.csv", pack=True, backbone="llama-tiny")
    with pytest.raises(ConfigError, match=r"^pack: llama backbones do not take packed batches"):
        Trainer(config).fit()


def test_lora_on_the_top_blocks_trains_only_them_and_caches_the_rest_exactly(
    tmp_path: Path,
) -> None:
    cached = _fit(tmp_path, "cached", trainable="lora:blocks=1,r=4,alpha=8")
    plain = _fit(tmp_path, "plain", trainable="lora:blocks=1,r=4,alpha=8", cache="off")
    model = next(d for e, d in cached[2].events if e == "model")
    assert model["cache"].startswith("frozen-trunk cache on: blocks 0-0")  # gpt2-tiny: 2 blocks
    _same_run(cached, plain, tolerance=1e-5)


@pytest.mark.parametrize(
    ("backbone", "trainable", "pooling"),
    [
        ("gpt2-tiny", "lora:blocks=1,r=4,alpha=8", "last-token"),
        ("gpt2-tiny", "last-block", "mean"),
        ("gpt2-tiny", "last-block", "first"),
        ("llama-tiny", "lora:blocks=1,r=4,alpha=8", "last-token"),
    ],
)
def test_pack_reads_the_frozen_trunk_cache_into_packed_rows_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backbone: str, trainable: str, pooling: str
) -> None:
    changes = {"backbone": backbone, "trainable": trainable, "pooling": pooling}
    plain = _fit(tmp_path, "plain", **changes)
    reads = []
    assemble_packed = TrunkCache.assemble_packed
    monkeypatch.setattr(
        TrunkCache, "assemble_packed", lambda *a: reads.append(1) or assemble_packed(*a)
    )
    packed = _fit(tmp_path, "packed", pack=True, **changes)
    assert reads  # the packed run read its batches from the cache, packed
    model = next(d for e, d in packed[2].events if e == "model")
    assert model["cache"].startswith("frozen-trunk cache on: blocks 0-0")
    _same_run(packed, plain, tolerance=1e-5)


def test_a_lora_blocks_run_reloads_and_scores_as_trained(tmp_path: Path) -> None:
    from llmclf.evaluation import evaluate_run

    _, metrics, _ = _fit(tmp_path, "run", trainable="lora:blocks=1,r=4,alpha=8", pack=True)
    again = evaluate_run(tmp_path / "run", device="cpu")
    assert again["accuracy"] == metrics["test"]["accuracy"]
    assert again["loss"] == pytest.approx(metrics["test"]["loss"], abs=1e-5)


def test_lora_blocks_puts_adapters_on_the_top_blocks_only() -> None:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=97, context_length=32, n_embd=32, n_layer=3, n_head=4)
    model = SequenceClassifier(GPT2(config), 3)
    report = apply_trainable(model, "lora:blocks=2")
    adapted = {int(n.split(".")[2]) for n in report.trainable_names if ".lora_" in n}
    assert adapted == {1, 2}
    assert report.first_trainable_layer == 1
    assert {n for n in report.trainable_names if ".lora_" not in n} == {"head.weight", "head.bias"}


def test_frozen_weights_get_no_gradient_with_lora() -> None:
    model = _model("last-token")
    report = apply_trainable(model, "lora:r=2,alpha=4")
    ids, lengths = _batch()
    model(ids, lengths).sum().backward()
    for name, param in model.named_parameters():
        assert (param.grad is not None) == (name in report.trainable_names), name


def _compiles() -> bool:
    try:
        torch.compile(lambda x: x + 1)(torch.zeros(2))
    except Exception:  # no C compiler, or inductor unsupported here
        return False
    return True


@pytest.mark.slow  # inductor compiles the block's forward and backward: about a minute
@pytest.mark.skipif(not _compiles(), reason="torch.compile cannot run here (no C compiler?)")
def test_compiled_blocks_give_the_eager_logits_and_gradients() -> None:
    from llmclf.training.trainer import compile_blocks

    model = _model("last-token")
    eager, eager_grads = _logits_and_grads(model, packed=True)
    compile_blocks(model)
    compiled, compiled_grads = _logits_and_grads(model, packed=True)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    for a, b in zip(eager_grads, compiled_grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5)
    # a packed row's attention loops over its texts outside the graph: batches of any number
    # of texts reuse the compiled blocks instead of recompiling them for each number
    from torch._dynamo.utils import counters

    ids, lengths = _batch()
    graphs = []
    for n in range(2, len(LENGTHS) + 1):
        with torch.no_grad():
            got = model.forward_packed(pack(ids[:n], lengths[:n]))
        torch.testing.assert_close(got, compiled[:n], rtol=1e-4, atol=1e-5)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[-1] == graphs[1], graphs  # nothing new compiled after the first sizes


def test_pack_says_a_head_only_run_has_nothing_to_pack(tmp_path: Path) -> None:
    _, _, reporter = _fit(tmp_path, "head", trainable="head", pack=True)
    assert "pack: only the head trains, from one cached vector per text: nothing to pack" in (
        reporter.messages()
    )
