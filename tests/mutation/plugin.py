"""pytest plugin for mutmut's runs (`-p tests.mutation.plugin`, see pyproject.toml's [tool.mutmut]).

- Each module is judged by its own test files (`MODULE_TESTS`): a mutant runs only the tests of
  those files that reach the mutated function. A function that only other modules' tests reach
  then shows as "no tests" instead of costing minutes of unrelated JAX tests per mutant.
- mutmut learns which tests reach a function from the calls its trampoline sees while the clean
  tests run ("stats"). A function traced once under `jax.jit` is not called again by a later test
  that hits the same compiled program, so jax's caches are cleared after every test of that run
  (the persistent compilation cache keeps recompiling cheap).
"""

from __future__ import annotations

import os

_METRIC_FIT = ("tests/smi/test_metric_fit.py", "tests/smi/test_fit_fuzz.py")
_DATA = ("tests/data/test_tokenizers.py", "tests/data/test_packing.py")
_PREFERENCE = (
  "tests/objectives/test_dpo.py",
  "tests/objectives/test_ppo.py",
  "tests/objectives/test_scir.py",
)
# The modules mutmut mutates (pyproject.toml's only_mutate) and the test files that judge each.
MODULE_TESTS = {
  "jaxlab/smi/metric.py": _METRIC_FIT,
  "jaxlab/smi/fit.py": _METRIC_FIT,
  "jaxlab/models/positional.py": (
    "tests/models/test_positional.py",
    "tests/models/test_rope_scaling.py",
  ),
  "jaxlab/train/flops.py": ("tests/train/test_flops.py",),
  "jaxlab/data/tokenizers.py": _DATA,
  "jaxlab/data/packing.py": _DATA,
  "jaxlab/objectives/tl.py": ("tests/objectives/test_tl.py",),
  "jaxlab/eval/tool_use.py": ("tests/eval/test_tool_use.py",),
  "jaxlab/objectives/dpo.py": _PREFERENCE,
  "jaxlab/objectives/ppo.py": _PREFERENCE,
  "jaxlab/objectives/scir.py": _PREFERENCE,
}


def _mutant() -> str:
  return os.environ.get("MUTANT_UNDER_TEST", "")


def pytest_collection_modifyitems(config, items):
  mutant = _mutant()
  if "__mutmut_" not in mutant:  # stats, the clean and the forced-fail runs: everything
    return
  module = mutant.rpartition(".")[0].replace(".", "/") + ".py"
  own = MODULE_TESTS[module]
  keep = [item for item in items if item.nodeid.split("::")[0] in own]
  if len(keep) < len(items):
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep


def pytest_runtest_teardown(item, nextitem):
  del item, nextitem
  if _mutant() == "stats":
    import jax  # pylint: disable=g-import-not-at-top  (tests.mutation.summary imports this file)

    jax.clear_caches()
