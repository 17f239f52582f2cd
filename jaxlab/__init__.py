"""jaxlab: sharded LLaMA-style pretraining and the studies built on it."""

from jaxlab.platform import configure_cpu_flags, configure_platform

configure_platform()
configure_cpu_flags()
