"""HF interop against transformers itself (the hf extra): tiny random LlamaForCausalLM variants
imported and compared logit for logit in fp32, exported and loaded back with
AutoModelForCausalLM, and the committed fixture re-derived."""

import dataclasses
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

transformers = pytest.importorskip("transformers", reason="the hf extra (torch, transformers)")
torch = pytest.importorskip("torch", reason="the hf extra (torch, transformers)")

from jaxlab import presets  # noqa: E402
from jaxlab.config import write_config  # noqa: E402
from jaxlab.interop import safetensors_io  # noqa: E402
from jaxlab.models.transformer import Transformer, TransformerConfig  # noqa: E402
from jaxlab.train.checkpoints import Checkpointer  # noqa: E402
from jaxlab.train.state import TrainState  # noqa: E402
from tests.interop import make_fixture  # noqa: E402
from tests.interop.helpers import (  # noqa: E402
  FIXTURE,
  LOGIT_ATOL,
  export_hf,
  fixture_logits,
  import_hf,
  run_logits,
)

LLAMA3 = {
  "rope_type": "llama3",
  "rope_theta": 10.0,
  "factor": 4.0,
  "low_freq_factor": 1.0,
  "high_freq_factor": 2.0,
  "original_max_position_embeddings": 16,
}
VARIANTS = {
  "gqa_untied": dict(num_key_value_heads=2),
  "mha_tied_theta": dict(num_key_value_heads=4, tie_word_embeddings=True, rope_theta=500.0),
  "llama3_scaling": dict(num_key_value_heads=2, rope_parameters=LLAMA3),
}
IDS = np.random.RandomState(0).randint(0, 96, (2, 24)).astype(np.int32)


def tiny_llama(seed=0, **overrides):
  """A random fp32 LlamaForCausalLM: hidden 32, 2 layers, 4 heads, vocab 96; initializer range
  0.2, so logits reach magnitudes of a few units."""
  torch.manual_seed(seed)
  fields = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
    initializer_range=0.2,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
  )
  theta = overrides.pop("rope_theta", None)
  fields.update(overrides)
  if theta is not None:
    fields["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
  return transformers.LlamaForCausalLM(transformers.LlamaConfig(**fields)).float().eval()


def params_only_state(params) -> TrainState:
  """A train state holding `params` (what a run's checkpoint holds, minus optimizer moments)."""
  scalar = jnp.zeros((), jnp.int32)
  return TrainState(scalar, params, {}, jax.random.PRNGKey(0), {}, {})


def hf_logits(model) -> np.ndarray:
  with torch.no_grad():
    return model(torch.tensor(IDS, dtype=torch.long)).logits.numpy()


def as_4x_config(hf_dir: str) -> None:
  """Rewrites config.json as transformers 4.x writes it: top-level rope_theta, rope_scaling
  (null for plain RoPE), torch_dtype, no rope_parameters."""
  path = os.path.join(hf_dir, "config.json")
  with open(path) as f:
    config = json.load(f)
  rope = config.pop("rope_parameters")
  config["rope_theta"] = rope.pop("rope_theta")
  config["rope_scaling"] = None if rope["rope_type"] == "default" else rope
  config["torch_dtype"] = config.pop("dtype")
  with open(path, "w") as f:
    json.dump(config, f)


@pytest.mark.parametrize(
  "variant, style",
  [
    ("gqa_untied", "5.x"),
    ("mha_tied_theta", "4.x"),
    ("llama3_scaling", "4.x"),  # 5.x-style Llama 3 scaling: the committed fixture
  ],
)
def test_import_and_export_match_transformers(tmp_path, capsys, variant, style):
  model = tiny_llama(**VARIANTS[variant])
  expected = hf_logits(model)
  hf_dir = str(tmp_path / "hf")
  model.save_pretrained(hf_dir, max_shard_size="40KB")  # sharded: several files + an index
  assert os.path.isfile(os.path.join(hf_dir, safetensors_io.INDEX_FILE))
  if style == "4.x":
    as_4x_config(hf_dir)
  workdir = str(tmp_path / "run")
  import_hf(hf_dir, workdir, capsys)
  jaxlab_logits = run_logits(workdir, IDS)
  np.testing.assert_allclose(jaxlab_logits, expected, rtol=0, atol=LOGIT_ATOL)

  out = str(tmp_path / "exported")
  export_hf(workdir, out, capsys)
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
  assert type(reloaded).__name__ == "LlamaForCausalLM"
  assert reloaded.config.tie_word_embeddings == model.config.tie_word_embeddings
  np.testing.assert_array_equal(hf_logits(reloaded), expected)  # the same fp32 weights
  np.testing.assert_allclose(hf_logits(reloaded), jaxlab_logits, rtol=0, atol=LOGIT_ATOL)


@pytest.mark.parametrize("scan_layers", [True, False])
def test_export_of_a_jaxlab_initialized_run(tmp_path, capsys, scan_layers):
  """A run jaxlab initialized (stacked or separately named layers; GQA, Llama 3 scaling,
  untied head) exports to a LlamaForCausalLM with jaxlab's logits."""
  cfg = TransformerConfig(
    vocab_size=96,
    d_model=32,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    d_ff=48,
    max_seq_len=64,
    rope_theta=10.0,
    rope_llama3_scaling=(4.0, 1.0, 2.0, 16),
    scan_layers=scan_layers,
    init_std=0.2,
  )
  model = Transformer(cfg)
  params = nn.unbox(model.init(jax.random.PRNGKey(0), IDS))["params"]
  workdir = str(tmp_path / "run")
  config = presets.lm_config(**dataclasses.asdict(cfg))
  config.train.seq_len = 32
  os.makedirs(workdir)
  write_config(config, workdir)
  checkpointer = Checkpointer(workdir)
  checkpointer.save(3, params_only_state(params), {})
  checkpointer.close()
  out = str(tmp_path / "exported")
  assert export_hf(workdir, out, capsys)["step"] == 3
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
  expected = np.asarray(model.apply({"params": params}, IDS)[0])
  np.testing.assert_allclose(hf_logits(reloaded), expected, rtol=0, atol=LOGIT_ATOL)


def test_bf16_weights_import_as_transformers_reads_them(tmp_path, capsys):
  model = tiny_llama(seed=1, num_key_value_heads=2).to(torch.bfloat16)
  hf_dir = str(tmp_path / "hf")
  model.save_pretrained(hf_dir)
  expected = hf_logits(
    transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
  )
  workdir = str(tmp_path / "run")
  import_hf(hf_dir, workdir, capsys)
  np.testing.assert_allclose(run_logits(workdir, IDS), expected, rtol=0, atol=LOGIT_ATOL)
  out = str(tmp_path / "exported")
  assert export_hf(workdir, out, capsys, "--dtype", "bfloat16")["dtype"] == "bfloat16"
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(out)
  assert reloaded.dtype == torch.bfloat16


def test_the_committed_fixture_is_what_transformers_computes():
  np.testing.assert_allclose(
    make_fixture.fixture_logits(FIXTURE), fixture_logits(), rtol=0, atol=1e-6
  )
