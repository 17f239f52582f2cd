import ml_collections
import pytest

from jaxlab.config import ConfigError, apply_overrides, flat_keys, load_config, parse_arg


def _config():
  return ml_collections.ConfigDict(dict(
      seed=0, name="x", lr=0.1, flag=False, shape=(1, 2), maybe=None,
      model=ml_collections.ConfigDict(dict(d_model=8, dtype="float32"))))


def test_overrides_are_typed_by_current_values():
  config = _config()
  apply_overrides(config, [("seed", "3"), ("lr", "1e-3"), ("flag", "true"), ("shape", "(4, 5)"),
                           ("maybe", "7"), ("model.d_model", "16"), ("model.dtype", "bfloat16")])
  assert (config.seed, config.lr, config.flag, config.shape, config.maybe) == (3, 1e-3, True, (4, 5), 7)
  assert (config.model.d_model, config.model.dtype) == (16, "bfloat16")


def test_unknown_key_names_the_nearest_valid_key():
  with pytest.raises(ConfigError, match=r"unknown config key 'model\.d_modl' \(did you mean 'model\.d_model'\?\)"):
    apply_overrides(_config(), [("model.d_modl", "1")])
  with pytest.raises(ConfigError, match="did you mean 'model.d_model'"):
    apply_overrides(_config(), [("d_model", "1")])
  with pytest.raises(ConfigError, match="unknown config key 'model.d_model.x'"):
    apply_overrides(_config(), [("model.d_model.x", "1")])


@pytest.mark.parametrize("key,raw", [("seed", "abc"), ("lr", "fast"), ("flag", "maybe"), ("shape", "3")])
def test_wrong_type_is_one_line(key, raw):
  with pytest.raises(ConfigError, match=f"config key '{key}' expects") as info:
    apply_overrides(_config(), [(key, raw)])
  assert "\n" not in str(info.value)


def test_flat_keys():
  assert "model.d_model" in flat_keys(_config()) and "model" not in flat_keys(_config())


def test_parse_arg():
  args = parse_arg("steps=5,smoke", steps=1, smoke=False, name="a")
  assert (args.steps, args.smoke, args.name) == (5, True, "a")
  with pytest.raises(ConfigError, match="did you mean 'steps'"):
    parse_arg("stepz=5", steps=1)
  with pytest.raises(ConfigError, match="needs a value"):
    parse_arg("steps", steps=1)


def test_load_config(tmp_path):
  path = tmp_path / "c.py"
  path.write_text("import ml_collections\n"
                  "def get_config(arg=None):\n"
                  "  return ml_collections.ConfigDict(dict(arg=arg or ''))\n")
  assert load_config(f"{path}:hello").arg == "hello"
  assert load_config(str(path)).arg == ""
  with pytest.raises(ConfigError, match="config file not found"):
    load_config(str(tmp_path / "missing.py"))
  (tmp_path / "bad.py").write_text("x = 1\n")
  with pytest.raises(ConfigError, match="defines no get_config"):
    load_config(str(tmp_path / "bad.py"))
