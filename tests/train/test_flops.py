import os

from jaxlab.config import load_config
from jaxlab.models.transformer import TransformerConfig
from jaxlab.train.flops import matmul_params, peak_flops_per_device, train_flops_per_token

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_smi_tiny_flops_per_token_by_hand():
  """configs/smi_tiny.py: V=259, d=128, L=2, H=4, KV=2, d_head=128/4=32, d_ff=344, tied, T=128.

  N (matmul parameters), per layer:
    wq, wo: 2 * 128 * 4 * 32 = 32_768;  wk, wv: 2 * 128 * 2 * 32 = 16_384  -> attention 49_152
    w_gate, w_up, w_down: 3 * 128 * 344 = 132_096
    layer: 49_152 + 132_096 = 181_248;  two layers: 362_496
  output projection (the tied embedding, counted once): 128 * 259 = 33_152
  N = 362_496 + 33_152 = 395_648  (+ 5 norm scales * 128 = 396_288, the dry run's `params`)
  FLOPs/token = 6 N + 6 L H d_head T = 2_373_888 + 6 * 2 * 4 * 32 * 128 (= 196_608) = 2_570_496
  """
  config = load_config(os.path.join(REPO, "configs", "smi_tiny.py"))
  cfg = TransformerConfig.from_config(config.model)
  assert config.train.seq_len == 128
  assert matmul_params(cfg) == 395_648
  assert train_flops_per_token(cfg, config.train.seq_len) == 2_570_496


def test_peak_flops_by_device_kind_prefix():
  assert peak_flops_per_device("TPU v5 lite") == 197e12
  assert peak_flops_per_device("TPU v5p") == 459e12  # not "TPU v5" lite's
  assert peak_flops_per_device("NVIDIA H100 80GB HBM3") == 989e12
  assert peak_flops_per_device("cpu") is None
