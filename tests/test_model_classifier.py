"""The classification head and its pooling, and the exactness the speed work relies on."""

from __future__ import annotations

import pytest
import torch

import llmclf
from llmclf.errors import UsageError
from llmclf.models.classifier import POOLINGS, SequenceClassifier, pool
from llmclf.models.gpt2 import GPT2, GPT2Config
from llmclf.models.lora import add_lora


def build_backbone(name: str, weights="random", **kwargs):
    """The registered backbone ``name``, built by its registry entry."""
    return llmclf.backbones.get(name)(weights, **kwargs)


PAD = 50256  # <|endoftext|>, the book's padding token


@pytest.fixture(scope="module")
def classifier() -> SequenceClassifier:
    """gpt2-tiny: the real context length (1,024) at a small width."""
    torch.manual_seed(0)
    return SequenceClassifier(build_backbone("gpt2-tiny"), num_classes=2).eval()


def texts() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return [torch.randint(0, 50000, (n,), generator=g) for n in (7, 23, 1, 14)]


def right_pad(seqs: list[torch.Tensor], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(seqs), width), PAD)
    for i, seq in enumerate(seqs):
        ids[i, : len(seq)] = seq
    return ids, torch.tensor([len(s) for s in seqs])


def test_head_replaces_the_language_model_output(classifier: SequenceClassifier) -> None:
    assert classifier.head.in_features == 128 and classifier.num_classes == 2
    assert classifier.pooling == "last-token"
    ids, lengths = right_pad(texts(), 23)
    assert classifier(ids, lengths).shape == (4, 2)


@torch.no_grad()
def test_last_token_logits_do_not_depend_on_padding(classifier: SequenceClassifier) -> None:
    seqs = texts()
    own = torch.cat([classifier(*right_pad([s], len(s))) for s in seqs])  # no padding at all
    longest = classifier(*right_pad(seqs, max(len(s) for s in seqs)))  # padded per batch
    full = classifier(*right_pad(seqs, 1024))  # padded to the whole context
    assert (own - longest).abs().max().item() <= 1e-5
    assert (own - full).abs().max().item() <= 1e-5


@torch.no_grad()
def test_the_books_last_pooling_reads_the_padding(classifier: SequenceClassifier) -> None:
    last = SequenceClassifier(classifier.backbone, 2, pooling="last").eval()
    last.head.load_state_dict(classifier.head.state_dict())
    seq = texts()[0]
    ids, lengths = right_pad([seq], len(seq))
    assert torch.allclose(last(ids, lengths), classifier(ids, lengths))
    padded, lengths = right_pad([seq], 40)
    assert not torch.allclose(last(padded, lengths), classifier(padded, lengths))


@torch.no_grad()
def test_forward_from_a_cached_trunk_equals_forward(classifier: SequenceClassifier) -> None:
    ids, lengths = right_pad(texts(), 23)
    expected = classifier(ids, lengths)
    for k in range(len(classifier.backbone.h)):
        hidden = classifier.trunk(ids, k)
        assert torch.equal(classifier.forward_from(hidden, lengths, k), expected), k
    # k = n_layer: the cache holds the full last block, forward computes it at one position only
    hidden = classifier.trunk(ids, len(classifier.backbone.h))
    got = classifier.forward_from(hidden, lengths, len(classifier.backbone.h))
    assert torch.allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("pooling", ["last", "last-token", "first"])
@torch.no_grad()
def test_last_block_at_the_pooled_position_equals_the_full_block(pooling: str) -> None:
    torch.manual_seed(0)
    backbone = GPT2(GPT2Config(n_layer=2, n_embd=64, n_head=4, context_length=64, vocab_size=100))
    model = SequenceClassifier(backbone, 3, pooling=pooling)
    ids, lengths = torch.randint(0, 100, (5, 17)), torch.tensor([17, 3, 9, 1, 12])
    x = backbone.run_blocks(backbone.embed(ids))  # every position through every block
    full = model.head(pool(backbone.ln_f(x), lengths, pooling))
    assert torch.allclose(model(ids, lengths), full, rtol=0, atol=1e-6)


@pytest.mark.parametrize("lora", [False, True])
def test_last_block_at_the_pooled_position_has_the_full_blocks_gradients(lora: bool) -> None:
    torch.manual_seed(0)
    backbone = GPT2(GPT2Config(n_layer=1, n_embd=32, n_head=4, context_length=32, vocab_size=50))
    model = SequenceClassifier(backbone, 2, pooling="last-token")
    if lora:  # a wrapped projection takes the general path; give the adapter a non-zero update
        add_lora(model, r=2, alpha=4)
        with torch.no_grad():
            backbone.h[0].attn.c_attn.lora_B.normal_()
    ids, lengths = torch.randint(0, 50, (4, 11)), torch.tensor([11, 2, 7, 5])

    def grads(logits: torch.Tensor) -> dict[str, torch.Tensor]:
        model.zero_grad()
        logits.logsumexp(-1).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    fast = grads(model(ids, lengths))
    hidden = backbone.ln_f(backbone.run_blocks(backbone.embed(ids)))  # every position
    full = grads(model.head(pool(hidden, lengths, "last-token")))
    assert fast.keys() == full.keys() and "backbone.h.0.attn.c_attn.weight" in fast
    for name in fast:
        assert torch.allclose(fast[name], full[name], rtol=0, atol=1e-5), name


def test_pool_picks_the_right_vectors() -> None:
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)  # (B=2, T=4, C=3)
    lengths = torch.tensor([2, 4])
    assert torch.equal(pool(hidden, lengths, "last"), hidden[:, 3])
    assert torch.equal(pool(hidden, lengths, "first"), hidden[:, 0])
    assert torch.equal(
        pool(hidden, lengths, "last-token"), torch.stack([hidden[0, 1], hidden[1, 3]])
    )
    mean = torch.stack([hidden[0, :2].mean(0), hidden[1].mean(0)])
    assert torch.allclose(pool(hidden, lengths, "mean"), mean)
    # without lengths every token is real
    assert torch.equal(pool(hidden, None, "last-token"), hidden[:, 3])
    assert torch.allclose(pool(hidden, None, "mean"), hidden.mean(1))


@pytest.mark.parametrize("pooling", POOLINGS)
def test_every_pooling_trains_end_to_end(pooling: str) -> None:
    torch.manual_seed(0)
    backbone = GPT2(GPT2Config(vocab_size=20, context_length=8, n_embd=16, n_layer=1, n_head=2))
    model = SequenceClassifier(backbone, num_classes=3, pooling=pooling)
    ids, lengths = torch.randint(0, 20, (4, 8)), torch.tensor([8, 3, 5, 1])
    model(ids, lengths).logsumexp(-1).sum().backward()
    assert model.head.weight.grad is not None and backbone.wte.weight.grad is not None


def test_unknown_pooling_lists_the_valid_ones() -> None:
    backbone = GPT2(GPT2Config(vocab_size=20, context_length=8, n_embd=16, n_layer=1, n_head=2))
    with pytest.raises(UsageError, match="unknown pooling 'max'; choose one of last, last-token"):
        SequenceClassifier(backbone, 2, pooling="max")
    with pytest.raises(UsageError, match="num_classes"):
        SequenceClassifier(backbone, 0)
