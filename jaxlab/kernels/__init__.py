"""Pallas kernels for the hot paths, each with a pure-jnp reference, a custom_vjp and a
platform dispatch (`dispatch`): flash attention (`attention`), fused linear + cross-entropy
(`linear_ce`), the multi-step LIF neuron (`lif`) and XNOR spiking attention
(`xnor_attention`). `aot.aot_tpu_check` compiles all of them for a TPU topology from CPU.
References that the models also run live in `*_reference` modules here; kernels import nothing
from `jaxlab.models`."""
