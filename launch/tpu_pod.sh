#!/usr/bin/env bash
# Run a jaxlab config on every worker of a Cloud TPU VM slice (multi-host: each worker runs the
# same command; jax.distributed finds the coordinator on TPU VMs by itself).
#
#   launch/tpu_pod.sh TPU_NAME ZONE configs/smi_7b.py /mnt/runs/smi_7b [--config.key=value ...]
#
# Assumes the repository is checked out at ~/jaxlab on every worker (see `setup` below) and the
# workdir is on storage every worker can reach (GCS via gcsfuse, Filestore, ...).
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG WORKDIR [overrides...]" >&2
  exit 2
fi
tpu=$1 zone=$2 config=$3 workdir=$4
shift 4
# Quoted for the remote shell; no overrides adds nothing (printf ' %q' alone would add '').
remote="cd ~/jaxlab && .venv/bin/python -m jaxlab.launch$(printf ' %q' --config "$config" --workdir "$workdir" "$@")"
if [ "${SETUP:-0}" = 1 ]; then
  remote="cd ~/jaxlab && make install && ${remote#cd ~/jaxlab && }"
fi
exec gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command "$remote"
