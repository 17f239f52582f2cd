"""A Google Cloud Storage server on localhost, so gs:// paths are tested without a network.

Every client a run uses talks to it over HTTP exactly as to GCS: etils.epath (through fsspec's
gcsfs, via STORAGE_EMULATOR_HOST), orbax's tensorstore (TENSORSTORE_GCS_HTTP_URL) and
tensorboardX (google-cloud-storage, STORAGE_EMULATOR_HOST).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator

BUCKET = "jaxlab-test"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def client_environment(url: str) -> dict[str, str]:
  """The variables that point every GCS client of a process at the server at `url`."""
  return {
    "STORAGE_EMULATOR_HOST": url,
    "TENSORSTORE_GCS_HTTP_URL": url,
    "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",  # tensorstore: no credential lookup
    "EPATH_USE_TF": "false",  # epath would use tf.io.gfile (the real GCS) if TF is installed
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",  # no gRPC bucket-type probe
  }


def _send_generation_headers() -> None:
  """Makes the emulator's media downloads carry `x-goog-generation`, as GCS's do: tensorstore
  reads an object's generation from it (OCDBT's manifest updates fail without it)."""
  from gcp_storage_emulator import server
  from gcp_storage_emulator.exceptions import NotFound
  from gcp_storage_emulator.handlers import objects

  original = objects.download
  if getattr(original, "sends_generation", False):
    return

  def download(request, response, storage, *args, **kwargs):
    try:
      obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
      response["x-goog-generation"] = obj["generation"]
      response["x-goog-metageneration"] = obj["metageneration"]
    except NotFound:
      pass
    return original(request, response, storage, *args, **kwargs)

  download.sends_generation = True
  objects.download = download  # objects.get calls it for ?alt=media
  for _, methods in server.HANDLERS:
    for method, handler in methods.items():
      if handler is original:
        methods[method] = download


@contextlib.contextmanager
def local_gcs() -> Iterator[dict[str, str]]:
  """Runs an in-memory GCS server holding an empty bucket `BUCKET`; yields the client
  environment (already set in os.environ, restored afterwards)."""
  from gcp_storage_emulator.server import create_server

  logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)  # 404s are expected
  _send_generation_headers()
  port = _free_port()
  server = create_server("localhost", port, in_memory=True, default_bucket=BUCKET)
  server.start()
  # A client that closes a connection early (a ranged read) is not an error worth a traceback.
  server._api._httpd.handle_error = lambda request, client_address: None
  env = client_environment(f"http://localhost:{port}")
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  _forget_backend_choice()
  try:
    yield env
  finally:
    server.stop()
    for key, value in saved.items():
      if value is None:
        os.environ.pop(key, None)
      else:
        os.environ[key] = value
    _forget_backend_choice()


def _forget_backend_choice() -> None:
  """epath decides once per process whether TensorFlow serves gs:// paths (a cached check of
  EPATH_USE_TF that any earlier path use may have made); make it read the variable again."""
  from etils.epath import gpath

  gpath._is_tf_installed.cache_clear()
