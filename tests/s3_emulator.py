"""An S3 server on localhost for the storage tests (moto's server mode, in memory), and the
environment that points s3fs (etils.epath's backend for s3://) at it.

Run by hand: `python tests/s3_emulator.py` prints the exports and serves until Ctrl-C.
"""

import contextlib
import sys
import urllib.request

from gcs_emulator import free_port, running, serve_until_interrupted

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
  with running(cmd, f'{url}/moto-api/', 'S3 server', timeout):
    request = urllib.request.Request(f'{url}/{bucket}', method='PUT')  # CreateBucket
    urllib.request.urlopen(request, timeout=10).read()
    yield url


if __name__ == '__main__':
  serve_until_interrupted(serve, environment, f's3://{BUCKET}')
