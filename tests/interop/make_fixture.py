"""Writes tests/interop/fixtures/tiny_llama: a tiny random `transformers.LlamaForCausalLM`
(grouped-query attention, untied head, Llama 3 RoPE scaling, BF16 weights; about 12 KB) and the
fp32 logits transformers computes from it, so the import is checked against transformers even
where transformers is not installed.

  python tests/interop/make_fixture.py   # needs torch and transformers (the hf extra)
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "tiny_llama")
# Token ids the logits are computed on. With rope_theta 10 and original length 16 the four RoPE
# frequencies fall in all three Llama 3 bands (kept, blended, slowed down).
INPUT_IDS = [[1, 17, 3, 29, 8, 8, 30, 2, 11, 25, 4, 19, 7, 31, 0, 22]]


def llama_config():
  import transformers

  return transformers.LlamaConfig(
    vocab_size=32,
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
    initializer_range=0.3,
    bos_token_id=1,
    eos_token_id=2,
    rope_parameters={
      "rope_type": "llama3",
      "rope_theta": 10.0,
      "factor": 4.0,
      "low_freq_factor": 1.0,
      "high_freq_factor": 2.0,
      "original_max_position_embeddings": 16,
    },
  )


def fixture_logits(directory: str) -> np.ndarray:
  """transformers' fp32 logits for INPUT_IDS from the checkpoint in `directory`."""
  import torch
  import transformers

  model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
  with torch.no_grad():
    return model.eval()(torch.tensor(INPUT_IDS)).logits.numpy()


def main() -> None:
  import torch
  import transformers

  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(llama_config()).to(torch.bfloat16)
  shutil.rmtree(FIXTURE, ignore_errors=True)
  model.save_pretrained(FIXTURE)
  os.remove(os.path.join(FIXTURE, "generation_config.json"))
  np.save(os.path.join(FIXTURE, "expected_logits.npy"), fixture_logits(FIXTURE))
  with open(os.path.join(FIXTURE, "input_ids.json"), "w") as f:
    json.dump(INPUT_IDS, f)
  print(f"wrote {FIXTURE}: {sorted(os.listdir(FIXTURE))}")


if __name__ == "__main__":
  main()
