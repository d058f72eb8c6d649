"""A Google Cloud Storage server on localhost for the storage tests (the `gcp-storage-emulator`
package, in memory), and the environment that points every GCS client of the stack at it.

Three clients talk to a bucket, each with its own endpoint setting:

  gcsfs (etils.epath: workdir files, lists, JSON, scores, events)   STORAGE_EMULATOR_HOST
  tensorstore (orbax checkpoints)                                    TENSORSTORE_GCS_HTTP_URL
  google-cloud-cpp inside array_record (ArrayRecord and TFDS reads)  CLOUD_STORAGE_EMULATOR_ENDPOINT

`environment(url)` gives all three, so one emulator serves a whole run, subprocesses included.
Run by hand: `python tests/gcs_emulator.py` prints the exports and serves until Ctrl-C.
"""

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request

BUCKET = 'rnl-test'


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def environment(url: str) -> dict:
  """Environment variables that send gcsfs, tensorstore and array_record to the server at `url`."""
  return {
      'STORAGE_EMULATOR_HOST': url,
      'TENSORSTORE_GCS_HTTP_URL': url,
      'CLOUD_STORAGE_EMULATOR_ENDPOINT': url,
      'GOOGLE_CLOUD_PROJECT': 'rnl-test',
      # gcsfs's default filesystem first asks the storage-control API for the bucket type (zonal,
      # hierarchical), which needs credentials; the plain one talks to the JSON API only.
      'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false',
      # No metadata server here: clients that look for credentials fail fast instead of waiting.
      'GCE_METADATA_ROOT': '127.0.0.1:1',
      'GCE_METADATA_HOST': '127.0.0.1:1',
  }


def _run_server(argv):
  """The emulator's `main` with conditional reads as GCS does them: a download carries the object's
  generation (`x-goog-generation`) and honours `ifGenerationMatch` / `ifGenerationNotMatch`
  (412 / 304). tensorstore re-reads an OCDBT manifest with `ifGenerationNotMatch` and refuses a reply
  without a generation ("Malformed StorageGeneration"); the package does neither."""
  from http import HTTPStatus  # pylint: disable=import-outside-toplevel
  from gcp_storage_emulator.handlers import objects  # pylint: disable=import-outside-toplevel

  download = objects.download

  def conditional_download(request, response, storage, *args, **kwargs):
    try:
      obj = storage.get_file_obj(request.params['bucket_name'], request.params['object_id'])
    except Exception:  # pylint: disable=broad-except  (NotFound: the package's own 404)
      return download(request, response, storage, *args, **kwargs)
    generation = str(obj['generation'])
    match = request.query.get('ifGenerationMatch', [None])[0]
    not_match = request.query.get('ifGenerationNotMatch', [None])[0]
    response['x-goog-generation'] = generation
    if match is not None and match != generation:
      response.status = HTTPStatus.PRECONDITION_FAILED
      return None
    if not_match is not None and not_match == generation:
      response.status = HTTPStatus.NOT_MODIFIED
      return None
    return download(request, response, storage, *args, **kwargs)

  objects.download = conditional_download  # before the server module copies it into its routes
  from gcp_storage_emulator.__main__ import main  # pylint: disable=import-outside-toplevel

  main(argv)


@contextlib.contextmanager
def running(cmd, ready_url, name, timeout=30.0):
  """Runs server command `cmd` until the block ends; enters once `ready_url` answers (a
  RuntimeError naming the server if it exits or does not answer within `timeout` s)."""
  server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.monotonic() + timeout
    while True:
      try:
        urllib.request.urlopen(ready_url, timeout=2).read()
        break
      except OSError:
        if server.poll() is not None or time.monotonic() > deadline:
          raise RuntimeError(f'the {name} did not start ({" ".join(cmd)})') from None
        time.sleep(0.2)
    yield
  finally:
    server.terminate()
    server.wait(10)


def serve_until_interrupted(serve_fn, environment_fn, bucket_url):
  """`python tests/<server>.py`: prints the exports for a shell and serves until Ctrl-C."""
  with serve_fn() as server_url:
    for key, value in environment_fn(server_url).items():
      print(f'export {key}={value}')
    print(f'# bucket: {bucket_url}   (Ctrl-C stops the server)', flush=True)
    try:
      while True:
        time.sleep(3600)
    except KeyboardInterrupt:
      pass


@contextlib.contextmanager
def serve(bucket: str = BUCKET, timeout: float = 30.0):
  """Starts the emulator with `bucket` (in memory) and yields its URL; stops it on exit."""
  port = free_port()
  url = f'http://127.0.0.1:{port}'
  cmd = [sys.executable, __file__, '--server', 'start', '--host=127.0.0.1']
  cmd += [f'--port={port}', '--in-memory', f'--default-bucket={bucket}']
  with running(cmd, f'{url}/storage/v1/b/{bucket}', 'GCS emulator', timeout):
    yield url


if __name__ == '__main__' and sys.argv[1:2] == ['--server']:
  _run_server(sys.argv[2:])
elif __name__ == '__main__':
  serve_until_interrupted(serve, environment, f'gs://{BUCKET}')
