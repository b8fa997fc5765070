"""Padding policies and batch loaders."""

from __future__ import annotations

import json
import re

import pytest
import torch

import llmclf
from llmclf.data.loaders import batch_positions, batches, num_batches
from llmclf.data.padding import (
    Batch,
    PaddingPolicy,
    check_combination,
    combination_problem,
    get_policy,
    policy_from_state,
)
from llmclf.errors import ConfigError, UsageError
from llmclf.models.classifier import POOLINGS

PAD = 50256
CONTEXT = 16
TEXTS = [[1, 2, 3], [4], [5, 6, 7, 8, 9], [10, 11]]  # lengths 3, 1, 5, 2
LABELS = [0, 1, 1, 0]
POLICIES = ["pad-batch", "pad-dataset", "truncate-batch", "truncate-dataset"]
NEEDS_MAX_LENGTH = {"truncate-dataset": 4}


def make(name: str, max_length: int | None = None, context: int = CONTEXT) -> PaddingPolicy:
    policy = get_policy(name, max_length or NEEDS_MAX_LENGTH.get(name), context, PAD)
    policy.fit([len(t) for t in TEXTS])
    return policy


def check(batch: Batch, token_ids: list[list[int]]) -> None:
    """Real tokens first, pad after, lengths say where the real tokens end."""
    b, t = batch.input_ids.shape
    assert batch.input_ids.dtype == batch.lengths.dtype == torch.long
    assert batch.lengths.shape == (b,) and b == len(token_ids)
    for row, length, ids in zip(
        batch.input_ids.tolist(), batch.lengths.tolist(), token_ids, strict=True
    ):
        assert 1 <= length <= t
        assert row[:length] == (ids[:length] or [PAD])
        assert row[length:] == [PAD] * (t - length)


def test_every_builtin_policy_is_registered() -> None:
    assert set(POLICIES) <= set(llmclf.padding.names())
    assert llmclf.padding.entry("pad-batch").description.startswith("Pad each batch")


@pytest.mark.parametrize(
    ("name", "width"),
    [("pad-batch", 5), ("pad-dataset", 5), ("truncate-batch", 1), ("truncate-dataset", 4)],
)
def test_batch_width_and_contents(name: str, width: int) -> None:
    batch = make(name).collate(TEXTS, LABELS)
    assert batch.input_ids.shape == (4, width)
    assert batch.labels.tolist() == LABELS
    check(batch, TEXTS)


def test_pad_batch_pads_to_the_longest_in_the_batch() -> None:
    batch = make("pad-batch").collate([[1, 2], [3]])
    assert batch.input_ids.tolist() == [[1, 2], [3, PAD]]
    assert batch.lengths.tolist() == [2, 1]
    assert batch.labels is None


def test_pad_dataset_pads_every_batch_to_the_longest_training_text() -> None:
    policy = make("pad-dataset")
    assert policy.collate([[1], [2]]).input_ids.tolist() == [[1] + [PAD] * 4, [2] + [PAD] * 4]
    longer = policy.collate([list(range(9))])  # longer than any training text: cut
    assert longer.input_ids.tolist() == [list(range(5))] and longer.lengths.tolist() == [5]


def test_truncate_batch_cuts_each_batch_to_its_shortest_text() -> None:
    policy = make("truncate-batch")
    for group in ([[1, 2, 3], [4, 5, 6, 7]], TEXTS, [[9] * 12, [8] * 7]):
        batch = policy.collate(group)
        assert batch.input_ids.shape[1] == min(map(len, group))
        assert (batch.lengths == batch.input_ids.shape[1]).all()
        assert PAD not in batch.input_ids.tolist()[0]


def test_truncate_dataset_cuts_and_pads_every_text_to_max_length() -> None:
    policy = get_policy("truncate-dataset", 4, CONTEXT, PAD)
    policy.fit([1, 6, 9])  # learns nothing: the width is max_length
    assert policy.keep() == 4 and policy.fixed_width
    batch = policy.collate([[1] * 10, [2] * 3])
    assert batch.input_ids.tolist() == [[1] * 4, [2] * 3 + [PAD]]
    assert batch.lengths.tolist() == [4, 3]


def test_truncate_dataset_needs_max_length() -> None:
    with pytest.raises(ConfigError, match="pass --max-length N"):
        get_policy("truncate-dataset", None, CONTEXT, PAD).fit([4, 6, 9])
    with pytest.raises(ConfigError, match="pass --max-length N"):
        check_combination("truncate-dataset", "last-token", None)


def test_a_truncate_dataset_run_saved_by_an_earlier_llmclf_still_loads() -> None:
    """It learned the shortest training text and cut each batch to it or shorter."""
    state = {"name": "truncate-dataset", "max_length": None, "length": 3}
    policy = policy_from_state(state, CONTEXT, PAD)
    assert policy.batch_dependent and not policy.fixed_width
    assert policy.collate([[1] * 10, [2] * 2]).input_ids.shape == (2, 2)
    assert combination_problem(policy, "last-token") is not None


@pytest.mark.parametrize("name", ["pad-batch", "pad-dataset", "truncate-dataset"])
def test_a_text_is_laid_out_the_same_alone_and_in_any_batch(name: str) -> None:
    policy = make(name)
    for i, ids in enumerate(TEXTS):
        alone = policy.collate([ids])
        n = alone.lengths.item()
        for group in (TEXTS, TEXTS[::-1], [ids, [7], list(range(40))]):
            batch = policy.collate(group)
            row = [g is ids for g in group].index(True)
            assert batch.lengths[row].item() == n, (name, i)
            assert batch.input_ids[row, :n].tolist() == alone.input_ids[0, :n].tolist()
            if policy.fixed_width:  # `last` pooling reads position T - 1: same T everywhere
                assert batch.input_ids.shape[1] == alone.input_ids.shape[1]


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("name", POLICIES)
def test_combinations_that_would_depend_on_the_batch_are_refused(name: str, pooling: str) -> None:
    reads_padding = pooling in ("last", "mean-all")
    refused = name == "truncate-batch" or (reads_padding and name == "pad-batch")
    if not refused:
        check_combination(name, pooling, 8)
        return
    with pytest.raises(ConfigError) as error:
        check_combination(name, pooling, 8)
    message = str(error.value)
    assert "\n" not in message and "depend" in message
    if reads_padding and name == "pad-batch":  # both fixes are named
        instead = "--pooling last-token" if pooling == "last" else "--pooling mean"
        assert "--padding pad-dataset" in message and instead in message
    else:  # pad-batch is refused with these poolings, so it is not offered then
        assert ("--padding pad-batch" in message) == (not reads_padding)


@pytest.mark.parametrize("name", POLICIES)
def test_the_cap_and_the_context_length_are_never_exceeded(name: str) -> None:
    long_texts = [list(range(40)), list(range(30))]
    capped = get_policy(name, 6, CONTEXT, PAD)
    capped.fit([40, 30])
    assert capped.collate(long_texts).input_ids.shape[1] <= 6
    uncapped = get_policy(name, 1000, CONTEXT, PAD)  # the context length still caps
    uncapped.fit([40, 30])
    batch = uncapped.collate(long_texts)
    assert batch.input_ids.shape[1] <= CONTEXT
    check(batch, long_texts)


@pytest.mark.parametrize("name", POLICIES)
def test_an_empty_text_is_one_pad_token_of_length_one(name: str) -> None:
    batch = make(name).collate([[], [7, 8]])
    assert batch.input_ids[0, 0].item() == PAD
    assert batch.lengths[0].item() == 1
    alone = make(name).collate([[]])
    assert set(alone.input_ids.flatten().tolist()) == {PAD} and alone.lengths.tolist() == [1]


@pytest.mark.parametrize("name", POLICIES)
def test_state_round_trips_through_json(name: str) -> None:
    policy = make(name, max_length=12)
    state = json.loads(json.dumps(policy.state()))
    assert state["name"] == name
    restored = policy_from_state(state, CONTEXT, PAD)
    assert type(restored) is type(policy)
    assert restored.state() == policy.state()
    assert torch.equal(restored.collate(TEXTS).input_ids, policy.collate(TEXTS).input_ids)


def test_dataset_policies_must_be_fit_first() -> None:
    with pytest.raises(UsageError, match=r"call fit\(train_lengths\) first"):
        get_policy("pad-dataset", None, CONTEXT, PAD).collate(TEXTS)


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(ConfigError, match="max_length"):
        get_policy("pad-batch", 0, CONTEXT, PAD)
    with pytest.raises(ConfigError, match="context_length"):
        get_policy("pad-batch", None, 0, PAD)


# ----- loaders -----------------------------------------------------------------------------
def test_batches_cover_every_text_once_with_matching_labels() -> None:
    lengths = [len(t) for t in TEXTS]
    texts = [TEXTS[i % 4] + [i] for i in range(23)]
    labels = [i % 2 for i in range(23)]
    seen = []
    for positions, batch in batches(texts, labels, make("pad-batch"), 5, shuffle=True, seed=1):
        assert batch.labels.tolist() == [labels[p] for p in positions]
        check(batch, [texts[p] for p in positions])
        seen += positions
    assert sorted(seen) == list(range(23))
    assert num_batches(23, 5, drop_last=False) == 5 and num_batches(23, 5, drop_last=True) == 4
    assert lengths == [3, 1, 5, 2]


def test_shuffling_is_seeded_by_seed_and_epoch() -> None:
    lengths = list(range(1, 101))
    first = batch_positions(lengths, 8, shuffle=True, seed=123, epoch=0)
    assert first == batch_positions(lengths, 8, shuffle=True, seed=123, epoch=0)
    assert first != batch_positions(lengths, 8, shuffle=True, seed=123, epoch=1)
    assert batch_positions(lengths, 8, shuffle=False, seed=0)[0] == list(range(8))


def test_drop_last_and_indices() -> None:
    groups = batch_positions([1] * 10, 4, shuffle=False, seed=0, drop_last=True)
    assert groups == [[0, 1, 2, 3], [4, 5, 6, 7]]
    shard = batch_positions([1] * 10, 2, shuffle=False, seed=0, indices=[1, 3, 5])
    assert shard == [[1, 3], [5]]


def test_bucketing_groups_similar_lengths_and_shuffles_batch_order() -> None:
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 200, (400,), generator=gen).tolist()
    plain = batch_positions(lengths, 8, shuffle=True, seed=5)
    bucketed = batch_positions(lengths, 8, shuffle=True, seed=5, bucket=True)
    assert sorted(p for g in bucketed for p in g) == list(range(400))

    def padding(groups):
        return sum(max(lengths[p] for p in g) * len(g) - sum(lengths[p] for p in g) for g in groups)

    assert padding(bucketed) < padding(plain) / 5
    firsts = [min(lengths[p] for p in g) for g in bucketed]
    assert firsts != sorted(firsts)  # batch order is shuffled
    assert bucketed == batch_positions(lengths, 8, shuffle=True, seed=5, bucket=True)


def test_a_bad_batch_size() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        list(batches(TEXTS, None, make("pad-batch"), 0, shuffle=False, seed=0))


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("name", ["truncate-batch", "truncate-dataset"])
def test_every_padding_a_refusal_suggests_is_accepted(name: str, pooling: str) -> None:
    """truncate-batch suggested --padding pad-batch, refused again with --pooling last."""
    try:
        check_combination(name, pooling, None)
    except ConfigError as exc:
        suggested = re.findall(r"--padding ([a-z-]+)", str(exc))
    else:
        return
    assert suggested
    for other in suggested:
        check_combination(other, pooling, 16)  # raises if refused
