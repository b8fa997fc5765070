"""Our Llama and Qwen3 equal transformers' on the same weights, saved as Hugging Face saves them."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from llmclf.errors import ConfigError, UsageError, WeightsError
from llmclf.models.classifier import SequenceClassifier
from llmclf.models.hf_checkpoint import config_from_hf, load_hf_checkpoint, model_class
from llmclf.models.hf_sizes import SIZES
from llmclf.models.llama import Llama, LlamaConfig
from llmclf.models.qwen3 import Qwen3, Qwen3Config

transformers = pytest.importorskip("transformers")

LENGTHS = [5, 37, 11, 1]  # texts of different lengths, right-padded; 37 > the rope's old context
PAD = 0
SMALL = {
    "vocab_size": 300,
    "hidden_size": 48,
    "intermediate_size": 80,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "max_position_embeddings": 128,
    "pad_token_id": PAD,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
LLAMA3_ROPE = {  # wavelengths on both sides of the two cut-offs (16 / 4 and 16 / 1 positions)
    "rope_type": "llama3",
    "factor": 4.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}
CASES = {  # name -> (transformers config class, fields beyond SMALL)
    "llama-gqa": ("LlamaConfig", {"num_key_value_heads": 2, "rope_theta": 10000.0}),
    "llama-mha-untied": ("LlamaConfig", {"num_key_value_heads": 4, "tie_word_embeddings": False}),
    "llama3-rope-tied": (
        "LlamaConfig",
        {
            "num_key_value_heads": 1,
            "rope_theta": 500000.0,
            "rope_scaling": LLAMA3_ROPE,
            "tie_word_embeddings": True,
        },
    ),
    "llama-biases": (
        "LlamaConfig",
        {"num_key_value_heads": 2, "attention_bias": True, "mlp_bias": True},
    ),
    "qwen3-qknorm": (
        "Qwen3Config",
        {
            "num_key_value_heads": 2,
            "head_dim": 16,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": True,
        },
    ),
}


def hf_config(case: str):
    kind, extra = CASES[case]
    return getattr(transformers, kind)(**SMALL, **extra)


def noisy(model: torch.nn.Module) -> torch.nn.Module:
    """Every weight random, norms and biases included (init leaves them 1 and 0)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model.eval()


def save_hf(model: torch.nn.Module, directory: Path, **kwargs) -> Path:
    model.save_pretrained(directory, **kwargs)
    return directory


def ours_from(directory: Path) -> Llama:
    config = config_from_hf(directory)
    model = model_class(config)(config)
    load_hf_checkpoint(model, directory)
    return model.eval()


def padded_batch(lengths: list[int], vocab_size: int = 300):
    g = torch.Generator().manual_seed(1)
    ids = torch.full((len(lengths), max(lengths)), PAD)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(3, vocab_size, (n,), generator=g)  # never the pad id
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    return ids, mask


@pytest.mark.parametrize("case", CASES)
def test_hidden_states_equal_transformers(tmp_path: Path, case: str) -> None:
    hf = noisy(transformers.AutoModel.from_config(hf_config(case)))
    ours = ours_from(save_hf(hf, tmp_path))
    ids, mask = padded_batch(LENGTHS)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        out = ours(ids)
    diff = (out - ref).abs()[mask].max().item()
    assert diff <= 1e-4, f"max abs difference {diff}"


def test_llama3_rope_scaling_is_applied(tmp_path: Path) -> None:
    """The scaled case would fail if the scaling were ignored: it changes the states."""
    hf = noisy(transformers.AutoModel.from_config(hf_config("llama3-rope-tied")))
    ours = ours_from(save_hf(hf, tmp_path))
    plain = Llama(dataclasses.replace(ours.config, rope_scaling=None)).eval()
    plain.load_state_dict(ours.state_dict())
    ids, _ = padded_batch([40])
    with torch.no_grad():
        assert (ours(ids) - plain(ids)).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("case", "head"),
    [
        ("llama-gqa", "LlamaForSequenceClassification"),
        ("llama3-rope-tied", "LlamaForSequenceClassification"),
        ("qwen3-qknorm", "Qwen3ForSequenceClassification"),
    ],
)
def test_classifier_logits_equal_transformers_sequence_classification(
    tmp_path: Path, case: str, head: str
) -> None:
    """transformers pools the last non-pad token: our ``last-token`` pooling, same logits."""
    config = hf_config(case)
    config.num_labels = 3
    hf = noisy(getattr(transformers, head)(config))
    ours = SequenceClassifier(ours_from(save_hf(hf, tmp_path)), 3, pooling="last-token").eval()
    with torch.no_grad():
        ours.head.weight.copy_(hf.score.weight)
        ours.head.bias.zero_()  # transformers' score layer has no bias
    ids, mask = padded_batch(LENGTHS)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask.long()).logits
        out = ours(ids, torch.tensor(LENGTHS))
    assert (out - ref).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", sorted(SIZES))
def test_parameter_count_of_every_size_equals_transformers(name: str) -> None:
    hf_fields = copy.deepcopy(SIZES[name].config)  # transformers edits rope_scaling in place
    config = config_from_hf(hf_fields)
    with torch.device("meta"):
        ours = model_class(config)(config)
        ref = transformers.AutoModel.from_config(transformers.AutoConfig.for_model(**hf_fields))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    assert set(ours.state_dict()) == set(ref.state_dict())  # the same names: key-for-key


def test_published_sizes_name_every_file_to_download() -> None:
    urls = SIZES["qwen3-1.7b"].urls()
    assert sorted(urls) == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
    ]
    assert urls["tokenizer.json"] == (
        "https://huggingface.co/Qwen/Qwen3-1.7B/resolve/main/tokenizer.json"
    )
    assert SIZES["llama-tiny"].urls() == {}  # random weights, GPT-2's tokenizer
    assert SIZES["llama-3.2-1b"].gated and not SIZES["smollm2-135m"].gated


@pytest.mark.parametrize("family", [LlamaConfig, Qwen3Config])
def test_right_padding_never_changes_a_texts_last_token(family: type[LlamaConfig]) -> None:
    config = config_from_hf({**SIZES["llama-tiny"].config, "model_type": family.model_type})
    torch.manual_seed(0)
    model = SequenceClassifier(model_class(config)(config), 2).eval()
    ids, _ = padded_batch(LENGTHS, config.vocab_size)
    with torch.no_grad():
        batch = model(ids, torch.tensor(LENGTHS))
        for row, n in enumerate(LENGTHS):
            alone = model(ids[row : row + 1, :n], torch.tensor([n]))
            assert (alone - batch[row]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", [Llama, Qwen3])
def test_last_block_at_one_position_equals_the_full_block(family: type[Llama]) -> None:
    config = family.config_class(**{**_tiny_fields(), "num_key_value_heads": 2})
    torch.manual_seed(0)
    model = family(config).eval()
    x = torch.randn(4, 23, config.hidden_size)
    pos = torch.tensor([0, 22, 7, 13])
    block = model.h[-1]
    with torch.no_grad():
        full = block(x)[torch.arange(4), pos]
        at = block.forward_at(x, pos)
    assert (full - at).abs().max().item() <= 1e-5


def test_forward_is_embed_then_blocks_in_any_split_then_norm() -> None:
    config = LlamaConfig(**{**_tiny_fields(), "num_key_value_heads": 2})
    torch.manual_seed(0)
    model = Llama(config).eval()
    ids, _ = padded_batch([9, 9], vocab_size=100)
    with torch.no_grad():
        whole = model(ids)
        x = model.embed(ids)
        split = model.ln_f(model.run_blocks(model.run_blocks(x, 0, 1), 1))
    assert torch.equal(whole, split)
    assert model.h is model.layers and model.ln_f is model.norm
    assert model.config.n_embd == 64 and model.config.context_length == 64


def test_sharded_checkpoint_loads(tmp_path: Path) -> None:
    hf = noisy(transformers.AutoModelForCausalLM.from_config(hf_config("llama-mha-untied")))
    save_hf(hf, tmp_path, max_shard_size="100KB")
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "model.safetensors.index.json").is_file()
    ours = ours_from(tmp_path)  # the directory; the index file itself works too
    load_hf_checkpoint(ours, tmp_path / "model.safetensors.index.json")
    ids, _ = padded_batch([12])
    with torch.no_grad():
        ref = hf.model(ids).last_hidden_state
        assert (ours(ids) - ref).abs().max().item() <= 1e-4


def test_bf16_checkpoint_loads_into_float32(tmp_path: Path) -> None:
    hf = noisy(transformers.AutoModel.from_config(hf_config("qwen3-qknorm")))
    save_hf(hf.to(torch.bfloat16), tmp_path)
    assert next(iter(load_file(tmp_path / "model.safetensors").values())).dtype == torch.bfloat16
    ours = ours_from(tmp_path)
    assert {p.dtype for p in ours.parameters()} == {torch.float32}
    expected = hf.state_dict()["norm.weight"].float()
    assert torch.equal(ours.norm.weight.detach(), expected)


def test_meta_model_takes_the_loaded_tensors(tmp_path: Path) -> None:
    hf = noisy(transformers.AutoModel.from_config(hf_config("llama-gqa")))
    save_hf(hf, tmp_path)
    config = config_from_hf(tmp_path)
    with torch.device("meta"):
        ours = Llama(config)
    load_hf_checkpoint(ours, tmp_path)
    assert not any(p.is_meta for p in ours.parameters())


def test_mismatched_weights_are_listed_in_one_error(tmp_path: Path) -> None:
    hf = noisy(transformers.AutoModel.from_config(hf_config("llama-gqa")))
    save_hf(hf, tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["layers.1.mlp.up_proj.weight"]
    state["layers.3.input_layernorm.weight"] = torch.ones(48)
    state["embed_tokens.weight"] = torch.zeros(301, 48)
    save_file(state, tmp_path / "model.safetensors")
    model = Llama(config_from_hf(tmp_path))
    with pytest.raises(WeightsError) as info:
        load_hf_checkpoint(model, tmp_path)
    message = str(info.value)
    assert "1 missing: layers.1.mlp.up_proj.weight" in message
    assert "1 unexpected: layers.3.input_layernorm.weight" in message
    assert "embed_tokens.weight (301, 48) (expected (300, 48))" in message
    assert "\n" not in message


def test_a_qwen3_checkpoint_does_not_fit_a_llama(tmp_path: Path) -> None:
    hf = noisy(transformers.AutoModel.from_config(hf_config("qwen3-qknorm")))
    save_hf(hf, tmp_path)
    model = Llama(
        LlamaConfig.from_hf_config(
            {**config_from_hf(tmp_path).to_hf_config(), "model_type": "llama"}
        )
    )
    with pytest.raises(WeightsError, match=r"unexpected: .*q_norm"):
        load_hf_checkpoint(model, tmp_path)


def test_config_reads_both_rope_layouts_and_round_trips(tmp_path: Path) -> None:
    published = SIZES["llama-3.2-1b"].config  # rope_theta + rope_scaling, as on the hub
    config = LlamaConfig.from_hf_config(published)
    assert config == LlamaConfig()  # the defaults are Llama 3.2 1B
    saved = transformers.LlamaConfig(
        **copy.deepcopy(published)
    )  # transformers 5 writes rope_parameters
    saved.save_pretrained(tmp_path)
    assert config_from_hf(tmp_path) == config
    assert LlamaConfig.from_hf_config(config.to_hf_config()) == config
    assert Qwen3Config.from_hf_config(SIZES["qwen3-0.6b"].config) == Qwen3Config()
    json.dumps(dataclasses.asdict(config))  # a manifest can store it


def test_config_leaves_out_take_hugging_faces_defaults() -> None:
    minimal = {
        k: SMALL[k]
        for k in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
        )
    }
    config = LlamaConfig.from_hf_config({"model_type": "llama", **minimal})
    assert config.num_key_value_heads == 4 and config.head_dim == 12
    assert config.rope_theta == 10000.0 and config.rope_scaling is None
    assert Qwen3Config.from_hf_config({"model_type": "qwen3", **minimal}).head_dim == 128


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"model_type": "mistral"}, "model_type 'mistral'"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 2.0}}, "type 'yarn'"),
        ({"hidden_act": "gelu"}, "silu only"),
        ({"num_key_value_heads": 3}, "multiple of num_key_value_heads"),
        ({"vocab_size": 0}, "vocab_size must be a positive integer"),
        ({"rope_scaling": {"rope_type": "llama3", "factor": 2.0}}, "lacks low_freq_factor"),
    ],
)
def test_bad_configs_name_the_field(change: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_hf({**SIZES["llama-tiny"].config, **change})


def test_sliding_window_qwen3_is_refused() -> None:
    with pytest.raises(ConfigError, match="sliding-window"):
        Qwen3Config.from_hf_config({**SIZES["qwen3-tiny"].config, "use_sliding_window": True})


def test_a_model_takes_its_own_familys_config() -> None:
    with pytest.raises(ConfigError, match="Qwen3 takes a Qwen3Config"):
        Qwen3(LlamaConfig(**_tiny_fields()))


def test_too_long_input_says_how_to_fix_it() -> None:
    model = Llama(LlamaConfig(**_tiny_fields()))
    with pytest.raises(UsageError, match="truncate the texts to at most 64 tokens"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_random_init_is_seeded_by_the_generator() -> None:
    config = Qwen3Config(**_tiny_fields())
    a, b = Qwen3(config), Qwen3(config)
    a.init_weights(torch.Generator().manual_seed(5))
    b.init_weights(torch.Generator().manual_seed(5))
    assert all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    assert torch.equal(a.layers[0].self_attn.q_norm.weight, torch.ones(32))


def _tiny_fields() -> dict:
    return {
        "vocab_size": 100,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "head_dim": 32,
        "max_position_embeddings": 64,
    }


def test_bf16_stays_within_bf16_rounding_of_transformers(tmp_path: Path) -> None:
    hf = noisy(transformers.AutoModel.from_config(hf_config("qwen3-qknorm")))
    ours = ours_from(save_hf(hf, tmp_path)).to(torch.bfloat16)
    ids, mask = padded_batch(LENGTHS)
    with torch.no_grad():
        ref = hf.to(torch.bfloat16)(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        out = ours(ids)
    assert out.dtype == torch.bfloat16
    diff = (out.float() - ref.float()).abs()[mask].max().item()
    assert diff <= 0.02 * ref.float().abs().max().item()


@pytest.mark.parametrize("family", [Llama, Qwen3])
def test_forward_from_a_cached_trunk_equals_forward(family: type[Llama]) -> None:
    config = family.config_class(**{**_tiny_fields(), "num_hidden_layers": 3})
    torch.manual_seed(0)
    model = SequenceClassifier(family(config), 2).eval()
    ids, _ = padded_batch([7, 19, 3], vocab_size=100)
    lengths = torch.tensor([7, 19, 3])
    with torch.no_grad():
        whole = model(ids, lengths)
        for k in range(3):
            assert torch.equal(model.forward_from(model.trunk(ids, k), lengths, k), whole), k
        # k = n_layer: the cache holds the full last block; forward ran it at one position only
        got = model.forward_from(model.trunk(ids, 3), lengths, 3)
        assert (got - whole).abs().max().item() <= 1e-6


@pytest.mark.parametrize("family", [Llama, Qwen3])
def test_lora_wraps_every_projection_and_the_one_position_path_stays_exact(
    family: type[Llama],
) -> None:
    from llmclf.models.lora import add_lora, merge_lora

    config = family.config_class(**_tiny_fields())
    torch.manual_seed(0)
    model = SequenceClassifier(family(config), 2).eval()
    wrapped = add_lora(model.backbone, 4, 8.0, family.lora_targets)
    assert len(wrapped) == 7 * config.num_hidden_layers
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("lora_B"):
                param.normal_(0, 0.1)  # B starts at zero: make the adapters count
    ids, _ = padded_batch([7, 19, 3], vocab_size=100)
    lengths = torch.tensor([7, 19, 3])
    with torch.no_grad():
        pooled = model(ids, lengths)  # the last block at the pooled positions only
        x = model.backbone.ln_f(model.backbone.run_blocks(model.backbone.embed(ids)))
        full = model.head(x[torch.arange(3), lengths - 1])
        assert (pooled - full).abs().max().item() <= 1e-5
        merge_lora(model.backbone)
        assert (model(ids, lengths) - pooled).abs().max().item() <= 1e-5
