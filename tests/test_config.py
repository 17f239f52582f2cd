import dataclasses

import ml_collections
import pytest

from jaxlab import presets
from jaxlab.config import (
  ConfigError,
  apply_overrides,
  flat_keys,
  load_config,
  parse_arg,
  section_defaults,
  settings_from_section,
)
from jaxlab.models.transformer import TransformerConfig


def _config():
  return ml_collections.ConfigDict(
    dict(
      seed=0,
      name="x",
      lr=0.1,
      flag=False,
      shape=(1, 2),
      maybe=None,
      model=ml_collections.ConfigDict(dict(d_model=8, dtype="float32")),
    )
  )


def test_overrides_are_typed_by_current_values():
  config = _config()
  apply_overrides(
    config,
    [
      ("seed", "3"),
      ("lr", "1e-3"),
      ("flag", "true"),
      ("shape", "(4, 5)"),
      ("maybe", "7"),
      ("model.d_model", "16"),
      ("model.dtype", "bfloat16"),
    ],
  )
  assert (config.seed, config.lr, config.flag, config.shape, config.maybe) == (
    3,
    1e-3,
    True,
    (4, 5),
    7,
  )
  assert (config.model.d_model, config.model.dtype) == (16, "bfloat16")


def test_unknown_key_names_the_nearest_valid_key():
  with pytest.raises(
    ConfigError, match=r"unknown config key 'model\.d_modl' \(did you mean 'model\.d_model'\?\)"
  ):
    apply_overrides(_config(), [("model.d_modl", "1")])
  with pytest.raises(ConfigError, match="did you mean 'model.d_model'"):
    apply_overrides(_config(), [("d_model", "1")])
  with pytest.raises(ConfigError, match="unknown config key 'model.d_model.x'"):
    apply_overrides(_config(), [("model.d_model.x", "1")])


@pytest.mark.parametrize(
  "key,raw", [("seed", "abc"), ("lr", "fast"), ("flag", "maybe"), ("shape", "3")]
)
def test_wrong_type_is_one_line(key, raw):
  with pytest.raises(ConfigError, match=f"config key '{key}' expects") as info:
    apply_overrides(_config(), [(key, raw)])
  assert "\n" not in str(info.value)


def test_flat_keys():
  assert sorted(flat_keys(_config())) == [
    "flag",
    "lr",
    "maybe",
    "model.d_model",
    "model.dtype",
    "name",
    "seed",
    "shape",
  ]
  nested = ml_collections.ConfigDict(dict(a=ml_collections.ConfigDict(dict(b=dict(c=1), d=2))))
  assert sorted(flat_keys(nested)) == ["a.b.c", "a.d"]


def test_parse_arg():
  args = parse_arg("steps=5,smoke", steps=1, smoke=False, name="a")
  assert (args.steps, args.smoke, args.name) == (5, True, "a")
  with pytest.raises(ConfigError, match="did you mean 'steps'"):
    parse_arg("stepz=5", steps=1)
  with pytest.raises(ConfigError, match="needs a value"):
    parse_arg("steps", steps=1)


def test_load_config(tmp_path):
  path = tmp_path / "c.py"
  path.write_text(
    "import ml_collections\n"
    "def get_config(arg=None):\n"
    "  return ml_collections.ConfigDict(dict(arg=arg or ''))\n"
  )
  assert load_config(f"{path}:hello").arg == "hello"
  assert load_config(str(path)).arg == ""
  with pytest.raises(ConfigError, match="config file not found"):
    load_config(str(tmp_path / "missing.py"))
  (tmp_path / "bad.py").write_text("x = 1\n")
  with pytest.raises(ConfigError, match="defines no get_config"):
    load_config(str(tmp_path / "bad.py"))


@dataclasses.dataclass(frozen=True)
class _Settings:
  width: int
  rate: float = 0.5
  names: tuple = dataclasses.field(default_factory=lambda: ("a",))


def test_settings_from_section_fills_defaults_and_extra():
  section = ml_collections.ConfigDict(dict(width=3))
  assert settings_from_section(_Settings, section, "s") == _Settings(width=3)
  assert settings_from_section(_Settings, {}, "s", width=4).width == 4
  assert section_defaults(_Settings).to_dict() == {"rate": 0.5, "names": ("a",)}


def test_settings_from_section_unknown_and_missing_keys_are_one_line_errors():
  with pytest.raises(
    ConfigError, match=r"^unknown config key 's\.rat' \(did you mean 's\.rate'\?\)$"
  ):
    settings_from_section(_Settings, dict(width=1, rat=0.1), "s")
  with pytest.raises(ConfigError, match=r"^config section 's' needs s\.width$"):
    settings_from_section(_Settings, dict(rate=0.1), "s")
  with pytest.raises(ConfigError, match="needs model.vocab_size, model.d_model"):
    TransformerConfig.from_config(ml_collections.ConfigDict())


def test_unknown_model_key_in_a_config_file_names_the_nearest_field(tmp_path):
  path = tmp_path / "typo.py"
  path.write_text(
    "from jaxlab import presets\n"
    "def get_config(arg=None):\n"
    "  config = presets.lm_config()\n"
    "  config.model.attention_query_blok = 64\n"
    "  return config\n"
  )
  config = load_config(str(path))
  with pytest.raises(ConfigError) as info:
    TransformerConfig.from_config(config.model)
  assert str(info.value) == (
    "unknown config key 'model.attention_query_blok' (did you mean 'model.attention_query_block'?)"
  )
  assert isinstance(info.value, ValueError)


# Model fields the presets set on purpose; every other field is TransformerConfig's default.
_LM_SET = set(presets.BASE_SHAPE)
_SMI_SET = _LM_SET | {
  "vocab_size",
  "max_seq_len",
  "param_dtype",
  "dtype",
  "remat_policy",
  "attention_query_block",
}


@pytest.mark.parametrize(
  "model,on_purpose",
  [
    (presets.model_config(), _LM_SET),
    (presets.lm_config().model, _LM_SET),
    (presets.smi_llama_config("7b", global_batch=8).model, _SMI_SET),
  ],
)
def test_preset_model_sections_take_the_dataclass_defaults(model, on_purpose):
  fields = {f.name: f for f in dataclasses.fields(TransformerConfig)}
  assert set(model) == set(fields)
  for name, field in fields.items():
    if name not in on_purpose:
      assert model[name] == field.default, name
  assert section_defaults(TransformerConfig).to_dict() == {
    name: f.default for name, f in fields.items() if name not in presets.BASE_SHAPE
  }
  TransformerConfig.from_config(model).validate()
