"""HF interop without transformers: the committed fixture (made by make_fixture.py with
transformers), synthetic checkpoints, refusals, and fine-tuning from an imported run."""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from jaxlab import presets
from jaxlab.config import ConfigError
from jaxlab.data.pipeline import build_lm_iterator
from jaxlab.experiments import lm_pretrain
from jaxlab.generate import load_params, read_run_settings
from jaxlab.interop import hf, safetensors_io
from jaxlab.parallel.mesh import build_mesh
from jaxlab.train.trainer import Trainer
from tests.cli_helpers import run_main
from tests.interop import synthetic_checkpoint
from tests.interop.helpers import (
  FIXTURE,
  LOGIT_ATOL,
  assert_one_line_error,
  copy_fixture,
  export_hf,
  fixture_input_ids,
  fixture_logits,
  import_hf,
  run_logits,
)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
  """The fixture imported once, in fp32."""
  workdir = str(tmp_path_factory.mktemp("imported") / "run")
  summary = hf.import_checkpoint(FIXTURE, workdir)
  assert summary["tensors"] == 21 and summary["tokenizer"] is None
  return workdir


def test_imported_fixture_matches_transformers_logits(imported):
  logits = run_logits(imported, fixture_input_ids())
  expected = fixture_logits()
  assert np.abs(expected).max() > 1.0  # large enough for the tolerance to mean something
  np.testing.assert_allclose(logits, expected, rtol=0, atol=LOGIT_ATOL)


def test_bfloat16_parameters_hold_the_fixture_weights_exactly(imported, tmp_path, capsys):
  """The fixture's weights are bfloat16, so a bfloat16 run computes the same fp32 logits."""
  workdir = str(tmp_path / "bf16")
  import_hf(FIXTURE, workdir, capsys, "--param_dtype", "bfloat16")
  assert read_run_settings(workdir).model.param_dtype == "bfloat16"
  ids = fixture_input_ids()
  np.testing.assert_array_equal(run_logits(workdir, ids), run_logits(imported, ids))


def test_imported_config_is_a_complete_lm_run(imported):
  settings = read_run_settings(imported)
  model = settings.model
  assert (model.vocab_size, model.d_model, model.n_heads, model.n_kv_heads) == (32, 16, 2, 1)
  assert model.rope_llama3_scaling == (4.0, 1.0, 2.0, 16) and model.rope_theta == 10.0
  assert not model.tie_embeddings and model.norm_eps == 1e-5
  assert settings.train.seq_len <= model.max_seq_len
  assert settings.data.tokenizer.kind == "hf" and settings.data.tokenizer.path == ""


def test_llama3_scaling_is_what_makes_the_logits_match(imported):
  """Without the scaling the same weights give clearly different logits (the test is sensitive)."""
  settings = read_run_settings(imported)
  _, params = load_params(imported, settings)
  plain = dataclasses.replace(settings.model, rope_llama3_scaling=None)
  from jaxlab.models.transformer import Transformer

  logits, _ = Transformer(plain).apply({"params": params}, fixture_input_ids())
  assert np.abs(np.asarray(logits) - fixture_logits()).max() > 100 * LOGIT_ATOL


def test_export_in_the_stored_dtype_reproduces_the_fixture_bit_for_bit(imported, tmp_path, capsys):
  out = str(tmp_path / "hf")
  summary = export_hf(imported, out, capsys, "--dtype", "bfloat16")
  assert summary["files"] == 1 and summary["dtype"] == "bfloat16"
  exported = safetensors_io.read_checkpoint(out)
  original = safetensors_io.read_checkpoint(FIXTURE)
  assert sorted(exported) == sorted(original)
  for name, info in original.items():
    np.testing.assert_array_equal(
      safetensors_io.load(exported[name]).view(np.uint16),
      safetensors_io.load(info).view(np.uint16),
      err_msg=name,
    )
  with open(os.path.join(out, "config.json")) as f:
    config = json.load(f)
  assert config["rope_parameters"]["rope_type"] == "llama3"
  assert config["rope_scaling"]["original_max_position_embeddings"] == 16  # 4.x readers
  assert config["architectures"] == ["LlamaForCausalLM"] and config["dtype"] == "bfloat16"


def test_sharded_export_writes_an_index_and_imports_back(imported, tmp_path):
  out = str(tmp_path / "hf")
  summary = hf.export_checkpoint(imported, out, max_shard_bytes=8_000)
  assert summary["files"] > 1
  with open(os.path.join(out, safetensors_io.INDEX_FILE)) as f:
    index = json.load(f)
  assert len(set(index["weight_map"].values())) == summary["files"]
  again = str(tmp_path / "again")
  hf.import_checkpoint(out, again)
  np.testing.assert_array_equal(
    run_logits(again, fixture_input_ids()), run_logits(imported, fixture_input_ids())
  )


def test_sharded_4x_style_input_with_tied_embeddings(tmp_path, capsys):
  """A synthetic 4.x-style checkpoint (top-level rope_theta, rope_scaling null), sharded, tied,
  stored in F16, imports with the weights it holds."""
  config = synthetic_checkpoint.hf_config(
    vocab=40, hidden=16, layers=2, heads=4, kv_heads=2, ffn=24, tied=True, rope_theta=500.0
  )
  hf_dir = str(tmp_path / "hf")
  synthetic_checkpoint.write_checkpoint(hf_dir, config, dtype="F16", shard_bytes=1500)
  assert os.path.isfile(os.path.join(hf_dir, safetensors_io.INDEX_FILE))
  workdir = str(tmp_path / "run")
  import_hf(hf_dir, workdir, capsys)
  settings = read_run_settings(workdir)
  assert settings.model.tie_embeddings and settings.model.rope_theta == 500.0
  _, params = load_params(workdir, settings)
  tensors = safetensors_io.read_checkpoint(hf_dir)
  assert "lm_head" not in params
  np.testing.assert_array_equal(
    np.asarray(params["embedding"]), safetensors_io.load(tensors["model.embed_tokens.weight"])
  )
  q = safetensors_io.load(tensors["model.layers.1.self_attn.q_proj.weight"])  # [heads*hd, d]
  wq = np.asarray(params["layers"]["attention"]["wq"][1])  # [d, heads, hd]
  np.testing.assert_array_equal(wq[:, 2, :], q[2 * 4 : 3 * 4].T)  # head 2, features in order


def _bad_checkpoint(tmp_path, config_changes=None, shapes=None, drop=()):
  config = synthetic_checkpoint.hf_config(vocab=24, hidden=8, layers=1, heads=2, kv_heads=1, ffn=8)
  all_shapes = synthetic_checkpoint.tensor_shapes(config)  # a valid model's tensors
  config.update(config_changes or {})
  all_shapes.update(shapes or {})
  for name in drop:
    del all_shapes[name]
  hf_dir = str(tmp_path / "hf")
  synthetic_checkpoint.write_checkpoint(hf_dir, config, shapes=all_shapes)
  return hf_dir


@pytest.mark.parametrize(
  "config_changes, shapes, drop, fragments",
  [
    (
      {"architectures": ["MistralForCausalLM"], "sliding_window": 4096},
      None,
      (),
      ("unsupported architecture MistralForCausalLM",),
    ),
    ({"attention_bias": True}, None, (), ("attention_bias=True", "no attention biases")),
    ({"sliding_window": 64}, None, (), ("sliding_window=64",)),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, None, (), ("rope_type 'yarn'",)),
    ({"rope_scaling": {"type": "linear", "factor": 2.0}}, None, (), ("rope_type 'linear'",)),
    ({"head_dim": 8}, None, (), ("head_dim=8",)),
    ({"hidden_act": "gelu"}, None, (), ("hidden_act='gelu'",)),
    ({"num_key_value_heads": 3}, None, (), ("not divisible",)),
    ({"vocab_size": "big"}, None, (), ("vocab_size='big'",)),
    (None, {"model.layers.0.self_attn.q_proj.bias": (8,)}, (), ("unexpected tensor",)),
    (None, {"model.layers.0.mlp.up_proj.weight": (9, 8)}, (), ("has shape [9, 8]",)),
    (None, None, ("model.norm.weight",), ("no tensor model.norm.weight",)),
  ],
)
def test_unsupported_checkpoints_are_one_line_and_write_nothing(
  tmp_path, capsys, config_changes, shapes, drop, fragments
):
  hf_dir = _bad_checkpoint(tmp_path, config_changes, shapes, drop)
  workdir = tmp_path / "run"
  code, out, err = run_main(
    hf.main, ["import", "--hf_dir", hf_dir, "--workdir", str(workdir)], capsys
  )
  assert_one_line_error(code, err, *fragments)
  assert out == "" and not workdir.exists()
  assert sorted(os.listdir(tmp_path)) == ["hf"]  # no temporary directory left either


def test_unreadable_inputs_are_one_line_errors(tmp_path, capsys):
  empty = tmp_path / "empty"
  empty.mkdir()
  not_json = tmp_path / "not_json"
  not_json.mkdir()
  (not_json / "config.json").write_text("{not json")
  truncated = copy_fixture(str(tmp_path / "truncated"))
  weights = os.path.join(truncated, "model.safetensors")
  os.truncate(weights, os.path.getsize(weights) - 100)
  cases = [
    (["import", "--hf_dir", str(tmp_path / "nope"), "--workdir", "w"], "is not a directory"),
    (["import", "--hf_dir", str(empty), "--workdir", "w"], "has no config.json"),
    (["import", "--hf_dir", str(not_json), "--workdir", "w"], "is not JSON"),
    (["import", "--hf_dir", truncated, "--workdir", "w"], "not a readable safetensors file"),
    (["import", "--hf_dir", str(empty)], "--workdir"),
    (["export", "--workdir", str(empty), "--out", "o"], "no config.json"),
    (["export", "--workdir", str(empty), "--out", "o", "--max_shard_mb", "0"], "at least 1"),
  ]
  for argv, fragment in cases:
    code, _, err = run_main(hf.main, argv, capsys)
    assert_one_line_error(code, err, fragment)
  assert not os.path.exists("w") and not os.path.exists("o")


def test_an_existing_workdir_or_out_is_refused(imported, tmp_path, capsys):
  code, _, err = run_main(hf.main, ["import", "--hf_dir", FIXTURE, "--workdir", imported], capsys)
  assert_one_line_error(code, err, "already exists and is not empty")
  code, _, err = run_main(hf.main, ["export", "--workdir", imported, "--out", FIXTURE], capsys)
  assert_one_line_error(code, err, "already exists and is not empty")


def _finetune_config(source: str):
  """A one-step lm_pretrain config for the model of the run in `source`, on synthetic byte-level
  data; the first step's learning rate (warmup from 0) is 0, so it keeps the starting weights."""
  settings = read_run_settings(source)
  config = presets.lm_config(**dataclasses.asdict(settings.model))
  config.train.update(steps=1, global_batch=8, seq_len=32, log_every=1, eval_every=0)
  config.optimizer.update(warmup_steps=1)
  config.data.update(synthetic_num_docs=100)
  config.checkpoint.update(init_from=source)
  return config


def _trainer(config, workdir: str) -> Trainer:
  """The LM trainer of `config` (no evaluator), its TrainerSettings carrying init_from."""
  settings = lm_pretrain.LMSettings.from_config(config)
  data = build_lm_iterator(
    settings.data,
    seq_len=32,
    global_batch=8,
    split="train",
    seed=0,
    process_index=0,
    process_count=1,
  )
  return Trainer(
    dataclasses.replace(settings.trainer_settings(), init_from=settings.checkpoint.init_from),
    lm_pretrain.lm_program(settings),
    data,
    settings.batch_spec(),
    mesh=build_mesh(settings.mesh),
    rules=settings.rules,
    workdir=workdir,
  )


def test_init_from_starts_fine_tuning_from_the_imported_parameters(tmp_path, capsys):
  config = synthetic_checkpoint.hf_config(
    vocab=264, hidden=32, layers=2, heads=4, kv_heads=2, ffn=64, max_positions=64
  )
  hf_dir = str(tmp_path / "hf")
  synthetic_checkpoint.write_checkpoint(hf_dir, config)
  source = str(tmp_path / "imported")
  import_hf(hf_dir, source, capsys)
  finetune = _finetune_config(source)
  lm_pretrain.validate(finetune)  # checkpoint.init_from names a run with a checkpoint
  trainer = _trainer(finetune, str(tmp_path / "finetune"))
  seen = {}
  trainer.add_hook(lambda state, step: seen.update(params=jax.device_get(state.params)), every=1)
  summary = trainer.run()
  assert summary["step"] == 1 and np.isfinite(summary["loss"])
  _, imported = load_params(source, read_run_settings(source))
  jax.tree.map(np.testing.assert_array_equal, seen["params"], jax.device_get(imported))

  other = _finetune_config(source)
  other.model.d_ff = 48
  with pytest.raises(ConfigError, match=r"parameter layers/mlp/w_down is \(2, 64, 32\) there"):
    _trainer(other, str(tmp_path / "other")).run()
  assert not os.path.exists(tmp_path / "other" / "checkpoints" / "1")


def test_init_from_without_a_checkpoint_fails_validation(tmp_path):
  config = presets.lm_config()
  config.checkpoint.init_from = str(tmp_path)
  with pytest.raises(ConfigError, match="checkpoint.init_from .*: no checkpoint"):
    lm_pretrain.validate(config, dry_run=True)
