"""Interoperability with other ecosystems' checkpoints: Hugging Face LLaMA (`jaxlab.interop.hf`)."""
