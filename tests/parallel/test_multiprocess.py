"""Two processes on one machine (gloo CPU collectives) train one model as a 2-host job."""

import json
import os
import subprocess
import sys

import portpicker

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_two_process_run_trains_and_checkpoints(tmp_path):
  workdir = tmp_path / "run"
  port = portpicker.pick_unused_port()
  processes = []
  for process_id in range(2):
    env = dict(
      os.environ,
      JAX_PLATFORMS="cpu",
      XLA_FLAGS="",
      JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
      JAX_NUM_PROCESSES="2",
      JAX_PROCESS_ID=str(process_id),
    )
    processes.append(
      subprocess.Popen(
        [
          sys.executable,
          "-m",
          "jaxlab.launch",
          "--config",
          "configs/smi_tiny.py:steps=4",
          "--workdir",
          str(workdir),
          "--config.train.log_every=1",
          "--config.checkpoint.every=2",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
      )
    )
  outputs = [p.communicate(timeout=300) for p in processes]
  for process, (_, err) in zip(processes, outputs):
    assert process.returncode == 0, err[-2000:]
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["num_devices"] == 2 and summary["step"] == 4
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]  # written once, by process 0
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
