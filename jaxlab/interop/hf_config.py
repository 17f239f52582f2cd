"""Hugging Face LLaMA `config.json` <-> jaxlab model fields (`TransformerConfig`).

Both spellings of RoPE settings are read: transformers 4.x writes `rope_theta` and `rope_scaling`
at the top level (most published checkpoints), 5.x writes them inside `rope_parameters`; exports
carry both, so either version loads them. Anything the jaxlab LLaMA cannot compute exactly (other
architectures, biases, sliding windows, partial rotary, other RoPE scalings, a head size other
than hidden_size / heads) is refused with one line naming it.
"""

from __future__ import annotations

from typing import Any

from jaxlab.models.transformer import TransformerConfig

ARCHITECTURE = "LlamaForCausalLM"
MODEL_TYPE = "llama"
# Fields that must keep LLaMA's default for the weights to mean what jaxlab computes.
_MUST_BE = {
  "hidden_act": ("silu", "the MLP activation must be silu"),
  "attention_bias": (False, "jaxlab's LLaMA has no attention biases"),
  "mlp_bias": (False, "jaxlab's LLaMA has no MLP biases"),
  "sliding_window": (None, "sliding-window attention is not supported"),
  "use_sliding_window": (False, "sliding-window attention is not supported"),
  "partial_rotary_factor": (1.0, "partial rotary embeddings are not supported"),
  "quantization_config": (None, "quantized checkpoints are not supported"),
}
_LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor")


def model_fields(hf: Any) -> dict[str, Any]:
  """TransformerConfig fields for a LLaMA `config.json` (parsed); ValueError (one line) naming
  the first architecture or field jaxlab cannot reproduce exactly."""
  if not isinstance(hf, dict):
    raise ValueError("config.json is not a JSON object")
  architectures = hf.get("architectures") or [ARCHITECTURE]
  if architectures != [ARCHITECTURE]:
    raise ValueError(
      f"unsupported architecture {', '.join(map(str, architectures))} (supported: {ARCHITECTURE})"
    )
  if hf.get("model_type", MODEL_TYPE) != MODEL_TYPE:
    raise ValueError(f"unsupported model_type {hf['model_type']!r} (supported: {MODEL_TYPE!r})")
  for key, (default, reason) in _MUST_BE.items():
    if hf.get(key, default) != default:
      raise ValueError(f"unsupported {key}={hf[key]!r}: {reason}")
  heads = _positive_int(hf, "num_attention_heads")
  fields = {
    "vocab_size": _positive_int(hf, "vocab_size"),
    "d_model": _positive_int(hf, "hidden_size"),
    "n_layers": _positive_int(hf, "num_hidden_layers"),
    "n_heads": heads,
    "n_kv_heads": _positive_int(hf, "num_key_value_heads", heads),
    "d_ff": _positive_int(hf, "intermediate_size"),
    "max_seq_len": _positive_int(hf, "max_position_embeddings", 2048),
    "norm_eps": _positive_float(hf, "rms_norm_eps", 1e-6),
    "tie_embeddings": _bool(hf, "tie_word_embeddings", False),
  }
  head_dim = hf.get("head_dim")
  if head_dim is not None and head_dim * heads != fields["d_model"]:
    raise ValueError(
      f"unsupported head_dim={head_dim!r}: jaxlab's head size is hidden_size / num_attention_heads"
    )
  fields["rope_theta"], fields["rope_llama3_scaling"] = _rope(hf, fields["max_seq_len"])
  TransformerConfig(**fields).validate()
  return fields


def _rope(hf: dict, max_seq_len: int) -> tuple[float, tuple[float, float, float, int] | None]:
  """(theta, Llama 3 scaling or None) from 4.x top-level keys or 5.x `rope_parameters`."""
  rope = hf.get("rope_scaling") or hf.get("rope_parameters") or {}
  if not isinstance(rope, dict) or any(isinstance(v, dict) for v in rope.values()):
    raise ValueError("unsupported rope settings: per-layer or malformed rope_parameters")
  legacy_theta = hf.get("rope_theta")
  theta = _positive_float(rope, "rope_theta", 10000.0 if legacy_theta is None else legacy_theta)
  if rope.get("partial_rotary_factor", 1.0) != 1.0:
    raise ValueError(f"unsupported partial_rotary_factor={rope['partial_rotary_factor']!r}")
  kind = rope.get("rope_type", rope.get("type", "default"))
  if kind == "default":
    return theta, None
  if kind != "llama3":
    raise ValueError(f"unsupported rope_type {kind!r} (supported: default, llama3)")
  factor, low, high = (_positive_float(rope, key) for key in _LLAMA3_KEYS)
  original = _positive_int(rope, "original_max_position_embeddings", max_seq_len)
  return theta, (factor, low, high, original)


def _missing(key: str) -> ValueError:
  return ValueError(f"config.json needs {key}")


def _positive_int(hf: dict, key: str, default: int | None = None) -> int:
  value = hf.get(key, default)
  if value is None:
    raise _missing(key)
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"config.json {key}={value!r} must be a positive integer")
  return value


def _positive_float(hf: dict, key: str, default: float | None = None) -> float:
  value = hf.get(key)
  value = default if value is None else value
  if value is None:
    raise _missing(key)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
    raise ValueError(f"config.json {key}={value!r} must be a positive number")
  return float(value)


def _bool(hf: dict, key: str, default: bool) -> bool:
  value = hf.get(key, default)
  if not isinstance(value, bool):
    raise ValueError(f"config.json {key}={value!r} must be true or false")
  return value


def hf_config(cfg: TransformerConfig, dtype: str, special_ids: dict[str, int | None]) -> dict:
  """A `config.json` for `transformers.LlamaForCausalLM` that computes what `cfg` computes;
  `dtype` names the stored weights' dtype, `special_ids` holds bos/eos/pad_token_id."""
  rope: dict[str, Any] = {"rope_type": "default", "rope_theta": cfg.rope_theta}
  if cfg.rope_llama3_scaling is not None:
    factor, low, high, original = cfg.rope_llama3_scaling
    rope.update(
      rope_type="llama3",
      factor=factor,
      low_freq_factor=low,
      high_freq_factor=high,
      original_max_position_embeddings=original,
    )
  legacy_scaling = None if cfg.rope_llama3_scaling is None else dict(rope)
  return {
    "architectures": [ARCHITECTURE],
    "model_type": MODEL_TYPE,
    "vocab_size": cfg.vocab_size,
    "hidden_size": cfg.d_model,
    "intermediate_size": cfg.d_ff,
    "num_hidden_layers": cfg.n_layers,
    "num_attention_heads": cfg.n_heads,
    "num_key_value_heads": cfg.n_kv_heads,
    "head_dim": cfg.head_dim,
    "hidden_act": "silu",
    "max_position_embeddings": cfg.max_seq_len,
    "rms_norm_eps": cfg.norm_eps,
    "tie_word_embeddings": cfg.tie_embeddings,
    "attention_bias": False,
    "mlp_bias": False,
    "rope_parameters": rope,  # transformers 5.x
    "rope_theta": cfg.rope_theta,  # transformers 4.x
    "rope_scaling": legacy_scaling,
    "dtype": dtype,
    "torch_dtype": dtype,
    **special_ids,
  }
