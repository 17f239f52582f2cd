"""Hand-written JAX-level mutants for `make mutate`, run by tests/mutation/run.py.

Each is a planted bug that mutmut's operators do not write (or whose tests mutmut does not run):
source edits given as exact (old text, new text) pairs, and the test file that must fail once
they are applied. An old text that no longer occurs in its file fails the run, so a refactor
that moves the code has to move the mutant with it.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Mutant:
  name: str
  path: str  # relative to the repository root
  edits: tuple[tuple[str, str], ...]  # (old, new), each old text occurring exactly once
  test: str  # the test file that must fail
  what: str


MUTANTS = (
  Mutant(
    name="accumulation_mean_of_microbatch_means",
    path="jaxlab/train/step.py",
    edits=(
      (
        "          loss_acc + out.loss_sum,\n",
        "          loss_acc + out.loss_sum / jnp.maximum(out.weight_sum, 1e-9),\n",
      ),
      (
        "          jax.tree.map(jnp.add, grads_acc, grads),\n",
        "          jax.tree.map(\n"
        "            lambda a, g: a + g / jnp.maximum(out.weight_sum, 1e-9), grads_acc, grads\n"
        "          ),\n",
      ),
      (
        "    denominator = jnp.maximum(weight_sum, 1e-9)\n",
        "    denominator = jnp.maximum(weight_sum, 1e-9)\n"
        "    if num_microbatches > 1:  # mutant: the mean of the per-microbatch means\n"
        "      loss_sum = loss_sum * denominator / num_microbatches\n"
        "      grads = jax.tree.map(lambda g: g * denominator / num_microbatches, grads)\n",
      ),
    ),
    test="tests/train/test_step.py",
    what="accumulation divides each microbatch by its own weight and averages the microbatches",
  ),
  Mutant(
    name="grid_coordinates_xy",
    path="jaxlab/models/positional.py",
    edits=(('np.arange(grid[1]), indexing="ij")', 'np.arange(grid[1]), indexing="xy")'),),
    test="tests/models/test_positional.py",
    what='grid_coordinates meshes with indexing="xy" instead of "ij"',
  ),
  Mutant(
    name="rope_sign_flipped",
    path="jaxlab/models/positional.py",
    edits=(
      (
        "[x1 * cos - x2 * sin, x2 * cos + x1 * sin]",
        "[x1 * cos + x2 * sin, x2 * cos - x1 * sin]",
      ),
    ),
    test="tests/models/test_positional.py",
    what="RoPE rotates by -angle (the sin terms' signs flipped)",
  ),
  Mutant(
    name="flops_attention_doubled",
    path="jaxlab/train/flops.py",
    edits=(
      (
        "attention = 6 * cfg.n_layers * cfg.n_heads",
        "attention = 12 * cfg.n_layers * cfg.n_heads",
      ),
    ),
    test="tests/train/test_flops.py",
    what="the attention term of the FLOP formula doubled (causal halving forgotten)",
  ),
  # Last: the slowest (two launched processes and a one-process reference run).
  Mutant(
    name="every_host_reads_shard_0",
    path="jaxlab/experiments/lm_pretrain.py",
    edits=(("    process_index=jax.process_index(),\n", "    process_index=0,\n"),),
    test="tests/parallel/test_multiprocess.py",
    what="every host of a multi-host run reads data shard 0",
  ),
)
