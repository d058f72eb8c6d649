"""An S3 server on localhost for the storage tests (moto's server mode, in memory), and the
environment that points s3fs (etils.epath's backend for s3://) at it.

Run by hand: `python tests/s3_emulator.py` prints the exports and serves until Ctrl-C.
"""

import contextlib
import subprocess
import sys
import time
import urllib.request

from gcs_emulator import free_port

BUCKET = 'rnl-test'


def environment(url: str) -> dict:
  """Environment variables that send boto3 / s3fs to the server at `url` (any keys work)."""
  return {
      'AWS_ENDPOINT_URL': url,
      'AWS_ACCESS_KEY_ID': 'testing',
      'AWS_SECRET_ACCESS_KEY': 'testing',
      'AWS_DEFAULT_REGION': 'us-east-1',
      'AWS_REGION': 'us-east-1',
      'AWS_EC2_METADATA_DISABLED': 'true',
  }


@contextlib.contextmanager
def serve(bucket: str = BUCKET, timeout: float = 30.0):
  """Starts moto's S3 server, creates `bucket` and yields the server's URL; stops it on exit."""
  port = free_port()
  url = f'http://127.0.0.1:{port}'
  cmd = [sys.executable, '-m', 'moto.server', '-H', '127.0.0.1', '-p', str(port)]
  server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.monotonic() + timeout
    while True:
      try:
        urllib.request.urlopen(f'{url}/moto-api/', timeout=2).read()
        break
      except OSError:
        if server.poll() is not None or time.monotonic() > deadline:
          raise RuntimeError(f'the S3 server did not start ({" ".join(cmd)})') from None
        time.sleep(0.2)
    request = urllib.request.Request(f'{url}/{bucket}', method='PUT')  # CreateBucket
    urllib.request.urlopen(request, timeout=10).read()
    yield url
  finally:
    server.terminate()
    server.wait(10)


if __name__ == '__main__':
  with serve() as server_url:
    for key, value in environment(server_url).items():
      print(f'export {key}={value}')
    print(f'# bucket: s3://{BUCKET}   (Ctrl-C stops the server)', flush=True)
    try:
      while True:
        time.sleep(3600)
    except KeyboardInterrupt:
      pass
