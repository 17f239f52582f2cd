from jaxlab import platform


def test_cpu_flags_are_appended_once_and_yield_to_the_users_choice(monkeypatch):
  monkeypatch.setattr(platform.importlib.metadata, "version", lambda name: "0.10.2")
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
  platform.configure_cpu_flags()
  platform.configure_cpu_flags()
  assert platform.os.environ["XLA_FLAGS"] == (
      "--xla_force_host_platform_device_count=8 " + platform.CPU_XLA_FLAGS)
  mine = "--xla_cpu_experimental_ynn_fusion_type=-dot"
  monkeypatch.setenv("XLA_FLAGS", mine)
  platform.configure_cpu_flags()
  assert platform.os.environ["XLA_FLAGS"] == mine


def test_cpu_flags_are_left_out_for_unmeasured_jaxlib_versions(monkeypatch):
  monkeypatch.setattr(platform.importlib.metadata, "version", lambda name: "0.11.0")
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  platform.configure_cpu_flags()
  assert "XLA_FLAGS" not in platform.os.environ
