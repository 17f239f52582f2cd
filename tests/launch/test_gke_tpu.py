"""launch/gke_tpu.py: the JobSet manifest parsed back from its YAML, bad input, --apply through a
fake kubectl. No cluster is involved: these check what would be submitted, not that it runs."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import yaml

from jaxlab.parallel.topology import parse_topology
from tests.cli_helpers import run_main
from tests.launch.fakes import REPO, calls, fake_tool, launcher, path_with

gke_tpu = launcher("gke_tpu")

BASE = [
  "--config",
  "configs/smi_7b.py",
  "--name",
  "smi-7b",
  "--topology",
  "v5p-128",
  "--image",
  "us-docker.pkg.dev/p/r/jaxlab:1",
  "--bucket",
  "my-bucket",
]


def _printed(argv, capsys) -> dict:
  status, out, err = run_main(gke_tpu.main, [*argv, "--print"], capsys)
  assert (status, err) == (0, "")
  docs = list(yaml.safe_load_all(out))
  assert len(docs) == 1
  return docs[0]


def _job(manifest):
  (replicated,) = manifest["spec"]["replicatedJobs"]
  return replicated, replicated["template"]["spec"]


def _pod(manifest):
  return _job(manifest)[1]["template"]


def _env(container):
  return {e["name"]: e for e in container["env"]}


# Written out by hand from Google Cloud's slice tables: TPU VMs (= pods), chips per VM, the
# node pool's topology label.
HAND = [
  ("v5p-128", 16, 4, "tpu-v5p-slice", "4x4x4"),
  ("v5e-16", 4, 4, "tpu-v5-lite-podslice", "4x4"),
  ("v4-32", 4, 4, "tpu-v4-podslice", "2x2x4"),
  ("v6e-64", 16, 4, "tpu-v6e-slice", "8x8"),
  ("v5e-8", 1, 8, "tpu-v5-lite-podslice", "2x4"),
  ("v5p-8", 1, 4, "tpu-v5p-slice", "2x2x1"),
]


@pytest.mark.parametrize("topology,hosts,chips,accelerator,grid", HAND)
def test_slice_shape_by_hand(topology, hosts, chips, accelerator, grid, capsys):
  argv = [*BASE]
  argv[argv.index("--topology") + 1] = topology
  manifest = _printed(argv, capsys)
  _, job = _job(manifest)
  assert (job["parallelism"], job["completions"], job["completionMode"]) == (
    hosts,
    hosts,
    "Indexed",
  )
  pod = _pod(manifest)["spec"]
  assert pod["nodeSelector"] == {
    "cloud.google.com/gke-tpu-accelerator": accelerator,
    "cloud.google.com/gke-tpu-topology": grid,
  }
  (container,) = pod["containers"]
  assert container["resources"]["limits"] == {"google.com/tpu": chips}
  assert container["resources"]["requests"] == {"google.com/tpu": chips}
  assert _env(container)["JAX_NUM_PROCESSES"]["value"] == str(hosts)


@pytest.mark.parametrize(
  "topology", "v4-8 v4-64 v4-512 v5p-16 v5p-256 v5p-1024 v5e-4 v5e-256 v5litepod-32 v6e-1".split()
)
def test_hosts_times_chips_per_host_is_the_slice(topology):
  spec = parse_topology(topology)
  shape = gke_tpu.slice_shape(topology)
  assert shape.chips_per_host == math.prod(spec.chips_per_host_bounds)
  assert shape.hosts * shape.chips_per_host == spec.num_chips
  assert shape.gke_topology == spec.topology_name.split(":")[1]
  assert math.prod(map(int, shape.gke_topology.split("x"))) == spec.num_chips


def test_manifest_wires_jax_distributed_command_and_bucket(capsys):
  manifest = _printed(
    [*BASE, "--config.seed=1", "--config.data.train_files=/bucket/d/*.jsonl"], capsys
  )
  assert manifest["apiVersion"] == "jobset.x-k8s.io/v1alpha2"
  assert manifest["kind"] == "JobSet"
  assert manifest["metadata"]["name"] == "smi-7b"
  # one slice per node pool: JobSet places each Job on a node pool of its own
  assert manifest["metadata"]["annotations"] == {
    "alpha.jobset.sigs.k8s.io/exclusive-topology": "cloud.google.com/gke-nodepool"
  }
  assert manifest["spec"]["network"] == {"enableDNSHostnames": True}
  assert manifest["spec"]["failurePolicy"] == {"maxRestarts": 3}
  replicated, job = _job(manifest)
  assert replicated["replicas"] == 1
  assert job["backoffLimit"] == 0  # one failed host fails the Job; JobSet restarts them all
  pod = _pod(manifest)
  assert pod["metadata"]["annotations"] == {"gke-gcsfuse/volumes": "true"}
  spec = pod["spec"]
  assert spec["restartPolicy"] == "Never"
  (container,) = spec["containers"]
  assert container["image"] == "us-docker.pkg.dev/p/r/jaxlab:1"
  assert container["command"] == [
    "python",
    "-m",
    "jaxlab.launch",
    "--config",
    "configs/smi_7b.py",
    "--workdir",
    "/bucket/runs/smi-7b",
    "--distributed=on",
    "--config.seed=1",
    "--config.data.train_files=/bucket/d/*.jsonl",
  ]
  env = _env(container)
  assert set(env) == {"JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"}
  # pod 0 of job 0 of the replicated job, under the headless service named like the JobSet
  assert env["JAX_COORDINATOR_ADDRESS"]["value"] == "smi-7b-slice-0-0.smi-7b:8482"
  host = f"{manifest['metadata']['name']}-{replicated['name']}-0-0"
  assert env["JAX_COORDINATOR_ADDRESS"]["value"].split(".")[0] == host
  assert env["JAX_NUM_PROCESSES"] == {"name": "JAX_NUM_PROCESSES", "value": "16"}
  assert env["JAX_PROCESS_ID"]["valueFrom"] == {
    "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
  }
  assert container["volumeMounts"] == [{"name": "bucket", "mountPath": "/bucket"}]
  assert spec["volumes"] == [
    {
      "name": "bucket",
      "csi": {
        "driver": "gcsfuse.csi.storage.gke.io",
        "volumeAttributes": {"bucketName": "my-bucket", "mountOptions": "implicit-dirs"},
      },
    }
  ]
  assert "serviceAccountName" not in spec and "namespace" not in manifest["metadata"]


def test_workdir_namespace_service_account_and_gs_prefix(capsys):
  argv = [*BASE, "--workdir", "runs/study/7b", "--namespace", "ml", "--service_account", "trainer"]
  argv[argv.index("--bucket") + 1] = "gs://my-bucket/"
  manifest = _printed([*argv, "--max_restarts", "0"], capsys)
  assert manifest["metadata"]["namespace"] == "ml"
  assert manifest["spec"]["failurePolicy"] == {"maxRestarts": 0}
  spec = _pod(manifest)["spec"]
  assert spec["serviceAccountName"] == "trainer"
  assert spec["volumes"][0]["csi"]["volumeAttributes"]["bucketName"] == "my-bucket"
  command = spec["containers"][0]["command"]
  assert command[command.index("--workdir") + 1] == "/bucket/runs/study/7b"


def test_jobset_manifest_function_matches_print(capsys):
  manifest = gke_tpu.jobset_manifest(
    name="smi-7b",
    config="configs/smi_7b.py",
    topology="v5p-128",
    image="us-docker.pkg.dev/p/r/jaxlab:1",
    bucket="my-bucket",
  )
  assert manifest == _printed(BASE, capsys)


def _with(flag, value):
  argv = [*BASE]
  argv[argv.index(flag) + 1] = value
  return argv


@pytest.mark.parametrize(
  "argv,message",
  [
    (_with("--topology", "v9-8"), "error: invalid TPU topology 'v9-8': unknown TPU generation"),
    (_with("--topology", "v5p-12"), "error: invalid TPU topology 'v5p-12'"),
    (_with("--name", "SMI-7b"), "error: --name 'SMI-7b' must be a DNS-1035 label"),
    (_with("--name", "smi_7b"), "error: --name 'smi_7b' must be a DNS-1035 label"),
    (_with("--name", "7b"), "error: --name '7b' must be a DNS-1035 label"),
    (_with("--name", "smi-"), "error: --name 'smi-' must be a DNS-1035 label"),
    # 16 hosts: "<name>-slice-0-15-xxxxx" leaves 63 - 17 = 46 characters for the name
    (_with("--name", "a" * 47), f"error: --name '{'a' * 47}' is too long"),
    (_with("--image", ""), "error: --image is required"),
    (_with("--image", "a b"), "error: --image 'a b' must be a container image reference"),
    (BASE[:-4], "error: --image is required"),
    (_with("--bucket", "B!"), "error: --bucket 'B!' is not a Cloud Storage bucket name"),
    (_with("--config", "configs/nope.py"), "error: config file not found: configs/nope.py"),
    (_with("--config", "/abs/x.py"), "error: --config '/abs/x.py' must be a path relative"),
    ([*BASE, "--workdir", "/runs/x"], "error: --workdir '/runs/x' must be a path inside"),
    ([*BASE, "--workdir", "../x"], "error: --workdir '../x' must be a path inside"),
    ([*BASE, "--config.seed"], "error: unexpected argument '--config.seed'"),
    ([*BASE, "extra"], "error: unexpected argument 'extra'"),
  ],
)
def test_bad_input_is_one_line_exit_2(argv, message, capsys):
  status, out, err = run_main(gke_tpu.main, [*argv, "--print"], capsys)
  assert (status, out) == (2, "")
  assert err.startswith(message), err
  assert err.count("\n") == 1


def test_print_or_apply_is_required(capsys):
  status, out, err = run_main(gke_tpu.main, BASE, capsys)
  assert (status, out) == (2, "")
  assert err == "error: one of the arguments --print --apply is required\n"
  status, _, err = run_main(gke_tpu.main, [*BASE, "--print", "--apply"], capsys)
  assert status == 2 and err.startswith("error: argument --apply: not allowed with")


def test_name_length_limit_depends_on_hosts(capsys):
  assert _printed(_with("--name", "a" * 46), capsys)["metadata"]["name"] == "a" * 46
  # one host: "<name>-slice-0-0-xxxxx" leaves 63 - 16 = 47
  argv = _with("--name", "a" * 47)
  argv[argv.index("--topology") + 1] = "v5p-8"
  assert _printed(argv, capsys)["metadata"]["name"] == "a" * 47


def test_apply_pipes_the_manifest_to_kubectl(tmp_path, monkeypatch, capsys):
  log = fake_tool(tmp_path / "bin", "kubectl", say="jobset.jobset.x-k8s.io/smi-7b created\n")
  monkeypatch.setenv("PATH", path_with(tmp_path / "bin"))
  status, out, err = run_main(gke_tpu.main, [*BASE, "--apply"], capsys)
  assert (status, err) == (0, "")
  ((argv, stdin),) = calls(log)
  assert argv == ["apply", "-f", "-"]
  assert list(yaml.safe_load_all(stdin)) == [_printed(BASE, capsys)]


def test_apply_reports_kubectl_failure(tmp_path, monkeypatch, capsys):
  fake_tool(tmp_path / "bin", "kubectl", exit_status=1)
  monkeypatch.setenv("PATH", path_with(tmp_path / "bin"))
  assert run_main(gke_tpu.main, [*BASE, "--apply"], capsys)[0] == 1
  monkeypatch.setenv("PATH", str(tmp_path / "empty"))
  status, out, err = run_main(gke_tpu.main, [*BASE, "--apply"], capsys)
  assert (status, out) == (2, "")
  assert err == "error: kubectl not found on PATH (use --print to see the manifest)\n"


def test_runs_as_a_script(tmp_path):
  """The file itself, as a user runs it: YAML on stdout, nothing written."""
  result = subprocess.run(
    [sys.executable, "launch/gke_tpu.py", *_with("--topology", "v5e-16"), "--print"],
    cwd=REPO,
    capture_output=True,
    text=True,
    stdin=subprocess.DEVNULL,
    timeout=60,
  )
  assert (result.returncode, result.stderr) == (0, "")
  (manifest,) = yaml.safe_load_all(result.stdout)
  assert _job(manifest)[1]["parallelism"] == 4
