"""The reference: ``transformers.GPT2ForSequenceClassification`` trained with the book's loop.

What a careful user of ``transformers`` would write for chapter 6 of the book: the same GPT-2
shape, dropout 0, the last block + final LayerNorm + score head trainable, AdamW (lr 5e-5,
weight decay 0.1), batches of 8, evaluation every 50 steps on 5 batches of the training and
validation splits, and at the end of each epoch on 5 training batches and the whole validation
split (llmclf's cadence). Padding is either the book's (every text to the longest training text)
or per batch; the pad token is ``<|endoftext|>`` (50256) on the right, and the model pools the
last token that is not padding, as ``transformers`` does. No attention mask is passed: with right
padding and causal attention the pooled token never sees the padding, so the mask would change
nothing but the cost (this is the fastest exact way to call the reference).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

PAD_ID = 50256  # <|endoftext|>, as the book pads


def build_model(n_layer: int, n_embd: int, n_head: int, num_labels: int, seed: int = 123):
    """A randomly initialised GPT2ForSequenceClassification, dropout 0, book's trainable set."""
    from transformers import GPT2Config, GPT2ForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()  # its advice to pass an attention mask: see the docstring
    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        num_labels=num_labels,
        pad_token_id=PAD_ID,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = GPT2ForSequenceClassification(config)
    model.requires_grad_(False)
    for module in (model.transformer.h[-1], model.transformer.ln_f, model.score):
        module.requires_grad_(True)
    return model


def load_llmclf_weights(hf_model, classifier_model) -> None:
    """Copy an llmclf SequenceClassifier's weights into ``hf_model`` (same function after).

    llmclf's head has a bias and transformers' ``score`` has none, so ``score`` becomes an
    ``nn.Linear`` with a bias (the same cost).
    """
    from llmclf.models.weights import hf_state_dict

    state = hf_state_dict(classifier_model.backbone, prefix="transformer.")
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("score.") and not k.endswith("attn.bias")]
    if missing or unexpected:
        raise RuntimeError(f"weights do not match: missing {missing}, unexpected {unexpected}")
    head = classifier_model.head
    score = nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        score.weight.copy_(head.weight)
        score.bias.copy_(head.bias)
    hf_model.score = score


def collate(token_ids: Sequence[Sequence[int]], length: int | None) -> torch.Tensor:
    """Right-pad to ``length`` (the book's) or to the batch's longest text (``None``)."""
    t = length or max(len(ids) for ids in token_ids)
    return torch.tensor([list(ids[:t]) + [PAD_ID] * (t - len(ids[:t])) for ids in token_ids])


class BookLoop:
    """The book's ``train_classifier_simple``, with llmclf's evaluation cadence.

    Every step's time is recorded, so that a run of a sample of the steps can be projected to
    whole epochs.
    """

    def __init__(self, model, splits: dict, length: int | None, batch_size: int = 8) -> None:
        self.model, self.splits, self.length, self.batch_size = model, splits, length, batch_size
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=5e-5, weight_decay=0.1)
        self.step_times: list[float] = []
        self.eval_batch_times: list[float] = []
        self.tokens_trained = 0  # padded tokens through training steps
        self.tokens_evaluated = 0
        self.global_step = 0  # the book evaluates on the global step count

    def _batches(self, name: str, *, shuffle: bool, seed: int = 0):
        from llmclf.data.loaders import batch_positions

        ids, labels = self.splits[name]
        # the same batches as llmclf's loader without bucketing: the book's (a seeded randperm)
        groups = batch_positions([len(x) for x in ids], self.batch_size, shuffle=shuffle, seed=seed)
        for rows in groups:
            yield (
                collate([ids[i] for i in rows], self.length),
                torch.tensor([labels[i] for i in rows]),
            )

    @torch.no_grad()
    def evaluate(self, name: str, max_batches: int | None) -> tuple[float, float]:
        self.model.eval()
        loss = correct = n = 0
        for i, (x, y) in enumerate(self._batches(name, shuffle=False)):
            if max_batches is not None and i >= max_batches:
                break
            start = time.perf_counter()
            logits = self.model(input_ids=x).logits
            self.eval_batch_times.append(time.perf_counter() - start)
            self.tokens_evaluated += x.numel()
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            n += len(y)
        self.model.train()
        return loss / max(n, 1), correct / max(n, 1)

    def epoch(
        self, epoch: int, *, eval_every: int = 50, eval_batches: int = 5, sample=None
    ) -> list[int]:
        """One epoch, or only its batches numbered in ``sample`` (then without evaluations, for
        a projection); returns the numbers of the batches trained on."""
        self.model.train()
        done = []
        for i, (x, y) in enumerate(self._batches("train", shuffle=True, seed=123 + epoch)):
            if sample is not None and i not in sample:
                continue
            start = time.perf_counter()
            self.optimizer.zero_grad()
            loss = F.cross_entropy(self.model(input_ids=x).logits, y)
            loss.backward()
            self.optimizer.step()
            self.step_times.append(time.perf_counter() - start)
            self.tokens_trained += x.numel()
            done.append(i)
            self.global_step += 1
            if sample is None and self.global_step % eval_every == 0:
                self.evaluate("train", eval_batches)
                self.evaluate("validation", eval_batches)
        if sample is None:
            self.evaluate("train", eval_batches)
            self.evaluate("validation", None)
        return done


@torch.inference_mode()
def predict_labels(model, token_ids: Sequence[Sequence[int]], batch_size: int) -> torch.Tensor:
    """Labels in input order: batches in input order, padded per batch, fp32."""
    model.eval()
    out = []
    for start in range(0, len(token_ids), batch_size):
        x = collate(token_ids[start : start + batch_size], None)
        out.append(model(input_ids=x).logits.argmax(-1))
    return torch.cat(out)
