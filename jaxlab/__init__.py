"""jaxlab: sharded LLaMA-style pretraining and the studies built on it."""

from jaxlab.platform import configure_platform

configure_platform()
