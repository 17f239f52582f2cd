"""Run a jaxlab config on a multi-host TPU slice in GKE: build a JobSet manifest, print or apply it.

  python launch/gke_tpu.py --config configs/smi_7b.py --name smi-7b --topology v5p-128 \
      --image IMAGE --bucket BUCKET [--workdir runs/smi_7b] [--config.key=value ...] \
      (--print | --apply)

One pod per TPU host, all in one Indexed Job of a JobSet; every pod runs the same
`python -m jaxlab.launch ... --distributed=on` and finds its peers through the environment
(JAX_COORDINATOR_ADDRESS = pod 0's stable hostname, JAX_NUM_PROCESSES = hosts, JAX_PROCESS_ID =
the pod's completion index). The bucket is mounted at /bucket by the Cloud Storage FUSE CSI driver,
so the workdir is a plain path every host shares. `--print` writes the YAML to stdout (no cluster
needed); `--apply` pipes it to `kubectl apply -f -`. The image must hold this repository at its
working directory with jaxlab installed. docs/launch.md explains each part of the manifest.
"""

from __future__ import annotations

import dataclasses
import math
import os
import posixpath
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as a script from a checkout without `pip install -e .`
  sys.path.append(REPO)

from jaxlab.cli import OneLineParser, fail  # noqa: E402
from jaxlab.parallel.topology import parse_topology  # noqa: E402

# GKE's node label values for each TPU generation (cloud.google.com/gke-tpu-accelerator).
ACCELERATORS = {
  "v4": "tpu-v4-podslice",
  "v5e": "tpu-v5-lite-podslice",
  "v5p": "tpu-v5p-slice",
  "v6e": "tpu-v6e-slice",
}
REPLICATED_JOB = "slice"  # pods are <name>-slice-0-<host>
CONTAINER = "jaxlab"
MOUNT = "/bucket"  # where the bucket appears in every pod
COORDINATOR_PORT = 8482  # the port JAX itself uses for the coordinator on Cloud TPU
GCSFUSE_DRIVER = "gcsfuse.csi.storage.gke.io"
EXCLUSIVE_TOPOLOGY = "alpha.jobset.sigs.k8s.io/exclusive-topology"
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
# JobSet refuses names whose longest pod name (<name>-<job>-<i>-<j> plus Kubernetes' 5-character
# random suffix) is not a DNS-1035 label: lowercase alphanumerics and '-', a letter first.
_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_MAX_LABEL = 63
_POD_SUFFIX = len("-abcde")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")


@dataclasses.dataclass(frozen=True)
class SliceShape:
  """What GKE needs to know about a TPU slice, derived from jaxlab.parallel.topology."""

  topology: str  # canonical accelerator name, e.g. "v5p-128"
  accelerator: str  # node label value, e.g. "tpu-v5p-slice"
  gke_topology: str  # chip grid as GKE writes it, e.g. "4x4x4"
  hosts: int  # TPU VMs in the slice = pods in the JobSet
  chips_per_host: int  # google.com/tpu requested by each pod


def slice_shape(topology: str) -> SliceShape:
  """Hosts, chips per host and GKE labels of a slice such as "v5p-128" (ValueError if unknown)."""
  spec = parse_topology(topology)
  chips_per_host = math.prod(spec.chips_per_host_bounds)
  return SliceShape(
    topology=spec.name,
    accelerator=ACCELERATORS[spec.generation],
    gke_topology=spec.topology_name.partition(":")[2],
    hosts=spec.num_chips // chips_per_host,
    chips_per_host=chips_per_host,
  )


def coordinator_address(name: str) -> str:
  """Pod 0's stable hostname under the JobSet's headless service (named like the JobSet)."""
  return f"{name}-{REPLICATED_JOB}-0-0.{name}:{COORDINATOR_PORT}"


def check_name(name: str, hosts: int, what: str = "--name") -> None:
  """ValueError unless `name` is a JobSet name whose pods' names will all be valid."""
  if not _DNS1035.fullmatch(name):
    raise ValueError(
      f"{what} {name!r} must be a DNS-1035 label: lowercase letters, digits and '-', "
      "starting with a letter and ending with a letter or digit"
    )
  longest = f"{name}-{REPLICATED_JOB}-0-{hosts - 1}"
  room = _MAX_LABEL - _POD_SUFFIX - (len(longest) - len(name))
  if len(name) > room:
    raise ValueError(
      f"{what} {name!r} is too long: pod names such as {longest}-xxxxx must fit "
      f"{_MAX_LABEL} characters, so at most {room} characters for {hosts} hosts"
    )


def check_bucket(bucket: str) -> str:
  """The bucket name without a gs:// prefix (ValueError if it cannot be a bucket name)."""
  name = bucket.removeprefix("gs://").rstrip("/")
  if not _BUCKET.fullmatch(name):
    raise ValueError(f"--bucket {bucket!r} is not a Cloud Storage bucket name")
  return name


def bucket_path(workdir: str) -> str:
  """The workdir as the pods see it: a path under the bucket's mount."""
  if not workdir or workdir.startswith(("/", "gs://")):
    raise ValueError(f"--workdir {workdir!r} must be a path inside the bucket, such as runs/NAME")
  path = posixpath.normpath(workdir)
  if path == "." or path.split("/")[0] == "..":
    raise ValueError(f"--workdir {workdir!r} must be a path inside the bucket, such as runs/NAME")
  return posixpath.join(MOUNT, path)


def check_config(config: str) -> None:
  """The config spec must name a .py file of this repository (the image holds the same files)."""
  path = config.partition(":")[0]
  if not path.endswith(".py"):
    raise ValueError(f"--config must be a .py file, got {path!r}")
  if os.path.isabs(path) or posixpath.normpath(path).startswith(".."):
    raise ValueError(f"--config {path!r} must be a path relative to the repository root")
  if not os.path.isfile(os.path.join(REPO, path)):
    raise ValueError(f"config file not found: {path}")


def check_overrides(overrides: Sequence[str]) -> None:
  for arg in overrides:
    key, eq, _ = arg.removeprefix("--config.").partition("=")
    if not arg.startswith("--config.") or not key or not eq:
      raise ValueError(f"unexpected argument {arg!r}: overrides look like --config.key=value")


def launch_command(config: str, workdir: str, overrides: Sequence[str] = ()) -> list[str]:
  """What every pod runs; `workdir` is the path inside the pod (under the bucket's mount)."""
  return [
    "python",
    "-m",
    "jaxlab.launch",
    "--config",
    config,
    "--workdir",
    workdir,
    "--distributed=on",
    *overrides,
  ]


def jobset_manifest(
  *,
  name: str,
  config: str,
  topology: str,
  image: str,
  bucket: str,
  workdir: str | None = None,
  overrides: Sequence[str] = (),
  namespace: str | None = None,
  service_account: str | None = None,
  max_restarts: int = 3,
  labels: dict[str, str] | None = None,
) -> dict[str, Any]:
  """The JobSet that runs `config` on one slice; ValueError (one line) for bad input.

  `workdir` is relative to the bucket (default runs/<name>); `overrides` are --config.k=v args.
  """
  shape = slice_shape(topology)
  check_name(name, shape.hosts)
  if not image or any(c.isspace() for c in image):
    raise ValueError(f"--image {image!r} must be a container image reference")
  bucket = check_bucket(bucket)
  pod_workdir = bucket_path(workdir if workdir is not None else f"runs/{name}")
  check_config(config)
  check_overrides(overrides)
  if max_restarts < 0:
    raise ValueError(f"--max_restarts must be >= 0, got {max_restarts}")
  container = {
    "name": CONTAINER,
    "image": image,
    "command": launch_command(config, pod_workdir, overrides),
    "env": [
      {"name": "JAX_COORDINATOR_ADDRESS", "value": coordinator_address(name)},
      {"name": "JAX_NUM_PROCESSES", "value": str(shape.hosts)},
      {"name": "JAX_PROCESS_ID", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}},
    ],
    "ports": [{"name": "coordinator", "containerPort": COORDINATOR_PORT}],
    "resources": {
      "requests": {"google.com/tpu": shape.chips_per_host},
      "limits": {"google.com/tpu": shape.chips_per_host},
    },
    "volumeMounts": [{"name": "bucket", "mountPath": MOUNT}],
  }
  pod_spec: dict[str, Any] = {
    "restartPolicy": "Never",
    # jaxlab.launch saves a checkpoint on SIGTERM; give it time before the kill.
    "terminationGracePeriodSeconds": 300,
    "nodeSelector": {
      "cloud.google.com/gke-tpu-accelerator": shape.accelerator,
      "cloud.google.com/gke-tpu-topology": shape.gke_topology,
    },
    "containers": [container],
    "volumes": [
      {
        "name": "bucket",
        "csi": {
          "driver": GCSFUSE_DRIVER,
          "volumeAttributes": {"bucketName": bucket, "mountOptions": "implicit-dirs"},
        },
      }
    ],
  }
  if service_account:
    pod_spec["serviceAccountName"] = service_account
  metadata: dict[str, Any] = {
    "name": name,
    "annotations": {EXCLUSIVE_TOPOLOGY: "cloud.google.com/gke-nodepool"},
  }
  if namespace:
    metadata["namespace"] = namespace
  if labels:
    metadata["labels"] = dict(labels)
  return {
    "apiVersion": "jobset.x-k8s.io/v1alpha2",
    "kind": "JobSet",
    "metadata": metadata,
    "spec": {
      "failurePolicy": {"maxRestarts": max_restarts},
      "network": {"enableDNSHostnames": True},
      "replicatedJobs": [
        {
          "name": REPLICATED_JOB,
          "replicas": 1,
          "template": {
            "spec": {
              "parallelism": shape.hosts,
              "completions": shape.hosts,
              "completionMode": "Indexed",
              "backoffLimit": 0,
              "template": {
                "metadata": {"annotations": {"gke-gcsfuse/volumes": "true"}},
                "spec": pod_spec,
              },
            }
          },
        }
      ],
    },
  }


def to_yaml(manifests: Sequence[dict[str, Any]]) -> str:
  """One YAML document per manifest, each starting with `---`, keys in the order built."""
  return yaml.safe_dump_all(manifests, sort_keys=False, explicit_start=True)


def kubectl_apply(text: str) -> int:
  """Pipes `text` to `kubectl apply -f -`; returns kubectl's exit status."""
  if shutil.which("kubectl") is None:
    raise ValueError("kubectl not found on PATH (use --print to see the manifest)")
  return subprocess.run(["kubectl", "apply", "-f", "-"], input=text, text=True).returncode


def main(argv: Sequence[str] | None = None) -> None:
  parser = OneLineParser(description=__doc__.splitlines()[0], allow_abbrev=False)
  parser.add_argument("--config", required=True, help="configs/NAME.py[:ARGS]")
  parser.add_argument("--name", required=True, help="JobSet name (DNS-1035 label)")
  parser.add_argument("--workdir", help="run directory inside the bucket (default runs/NAME)")
  parser.add_argument("--topology", help="TPU slice, e.g. v5p-128, v5e-16, v6e-64, v4-32")
  parser.add_argument("--image", help="container image holding this repository, jaxlab installed")
  parser.add_argument("--bucket", help="Cloud Storage bucket mounted at /bucket in every pod")
  parser.add_argument("--namespace", help="Kubernetes namespace (default: kubectl's)")
  parser.add_argument(
    "--service_account", help="Kubernetes service account allowed to use the bucket"
  )
  parser.add_argument(
    "--max_restarts",
    type=int,
    default=3,
    help="times the whole JobSet is recreated after a failure (runs resume from checkpoints)",
  )
  mode = parser.add_mutually_exclusive_group(required=True)
  mode.add_argument("--print", action="store_true", help="write the manifest to stdout")
  mode.add_argument("--apply", action="store_true", help="kubectl apply the manifest")
  args, overrides = parser.parse_known_args(argv)
  for option in ("topology", "image", "bucket"):
    if not getattr(args, option):
      fail(f"--{option} is required")
  try:
    manifest = jobset_manifest(
      name=args.name,
      config=args.config,
      topology=args.topology,
      image=args.image,
      bucket=args.bucket,
      workdir=args.workdir,
      overrides=overrides,
      namespace=args.namespace,
      service_account=args.service_account,
      max_restarts=args.max_restarts,
    )
    text = to_yaml([manifest])
    if args.print:
      sys.stdout.write(text)
      return
    sys.exit(kubectl_apply(text))
  except ValueError as e:
    fail(str(e))


if __name__ == "__main__":
  main()
