"""Model speed and memory: TSM-R50 and RNL-TSM-R50, this JAX port side by side with the PyTorch reference.

  python -m benchmarks.model [--out benchmarks/results/model.json] [--repeats 5] [--threads 2]
      [--frameworks jax,torch] [--models tsm,rnl] [--dtypes float32,bfloat16] [--modes eval,train]
      [--eval_batches 1,4] [--train_batch 2] [--frames 8] [--size 224] [--query_chunk 0]
      [--eval_query_chunk 784] [--eval_attention auto] [--xla_eval train] [--xla_train train]
      [--weights fixture|random] [--torch_device cpu|cuda] [--torch_dtypes float32] [--matmul_size 4096]

  On one GPU (JAX takes its default backend; see README's GPU table for the command used):
  python -m benchmarks.model --out benchmarks/results/model_gpu.json --weights random --torch_device cuda
      --torch_dtypes bfloat16 --dtypes bfloat16 --eval_batches 16 --train_batch 16 --repeats 20
      --matmul_size 8192

Every case is one subprocess (so its peak RSS is its own): it builds the network, compiles (JAX; timed
apart), runs one warm-up call and then --repeats timed calls, and prints one JSON line: median and all
times, clips/s, compile time, RSS after loading the weights, peak RSS of the whole process and of the
timed calls alone (VmHWM reset after set-up), and for JAX XLA's temporary arena. Cases:

  jax    eval    clip_groups.eval_step (model.apply(train=False)) on uint8 [B, T, S, S, 3] in passes
                 of --eval_clips_per_pass clips (-1 auto, as evaluation runs it), RNL attention as
                 --eval_query_chunk / --eval_attention say (the result's 'attention' names the method
                 that ran), jitted with the --xla_eval compiler options (see xla_options; 'train' =
                 sharding.compiler_options(), as evaluation runs it); float32 and bfloat16
  jax    train   rnl_jax.train.train_step (forward + backward + the original's SGD update, BatchNorm
                 in training mode, dropout 0.5), jitted with the --xla_train options ('train':
                 sharding.compiler_options(), as training runs it)
  torch  eval    tests/torch_reference.py's TSN (the original's module layout and ops) under
                 torch.no_grad(), float32 [B, 3T, S, S]
  torch  train   the same in train mode: forward, cross-entropy, backward, SGD(momentum 0.9) step

The PyTorch reference runs RNL's region conv in two flavours: 'masked' is the original's masked grouped
Conv3d (32x the depthwise MACs; what the original's users run), 'depthwise' a true depthwise Conv3d
(groups = C). TSM has no region conv (flavour '-'). Torch uses --threads intra-op threads; XLA:CPU uses
all cores of this machine (2 here: run with --threads equal to the core count).

Weights: RNL on both sides is the parity fixture's random checkpoint (tests/data/parity, rebuilt
with NumPy by tests/parity_fixture.py), so both compute the same function; JAX TSM takes the same tensors minus the RNL blocks, torch
TSM keeps torchvision's random init (values do not change speed). The parent process writes them to a
temporary directory the way each side's users hold them (write_checkpoints: the original's .pth.tar,
loaded with torch.load as its main.py does; this port's converted checkpoints, loaded with
rnl_jax.load_checkpoint as rnl_jax.protocol does), so a case's memory is that of loading a checkpoint
file, not of rebuilding and converting the fixture in the process (which leaves ~0.1 GB of freed
heap that glibc keeps). A --case run on its own (no 'checkpoint' in it) rebuilds the fixture in
process.

--weights random skips the fixture (fan-in-scaled random weights, BN statistics 0 / 1): no rebuild
of its 143 MB of tensors, and the same speed.

--torch_device cuda runs the reference on the GPU (cudnn.benchmark on, as the original's main.py sets;
bfloat16 through torch.autocast, as --torch_dtypes asks) and synchronizes around each timed call; every
case on a GPU also reports the device's peak memory (JAX: the allocator's peak_bytes_in_use; torch:
max_memory_allocated).

The run also measures the machine's matmul peak per dtype (--matmul_size^3 GEMM, best of --repeats,
jnp.dot and torch.mm; on a GPU each timed call is 10 products) and reports each case against the FLOP
limit: MACs (docs/original.md §8: TSM 32.70 G, RNL 89.3 G per 8x224 clip; x3 for a train step) x 2 /
peak, and as MFU (its inverse, against that measured peak). Results go to --out (JSON, one entry per
case; an existing file's cases are kept and not run again, so an interrupted run resumes) and a
Markdown table on stdout (also --out with .md).
"""

import argparse
import functools
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
# docs/original.md §8: G MACs per 8-frame 224 px clip (region conv as a true depthwise conv).
GMACS = {'tsm': 32.70, 'rnl': 89.30}


def rss_gb():
  """Current resident set size (GB) from /proc."""
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**30


def reset_peak_rss():
  """Restarts the process's peak RSS count (Linux: VmHWM), e.g. after compiling."""
  with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')


def peak_rss_since_reset_gb():
  """Peak RSS (GB) since the last reset_peak_rss (or the process start)."""
  with open('/proc/self/status') as f:
    return next(int(line.split()[1]) for line in f if line.startswith('VmHWM')) / 2**20


def start_run_peak():
  """Peak RSS (GB) of the set-up so far; then restarts the count, so the next reading is the run's."""
  setup_peak = peak_rss_since_reset_gb()
  reset_peak_rss()
  return setup_peak


def _cpu_name():
  with open('/proc/cpuinfo') as f:
    names = [line.split(':', 1)[1].strip() for line in f if line.startswith('model name')]
  return names[0] if names else platform.machine()


def peak_rss_gb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def gmacs(model, frames, size):
  """G MACs of one clip's forward: the 8x224 figure of docs/original.md §8, the backbone scaled by
  T*S^2 and the attention by (T*S^2)^2 (accurate to the per-frame / quadratic split given there)."""
  scale = frames * size * size / (8 * 224 * 224)
  tsm = GMACS['tsm'] * scale
  if model == 'tsm':
    return tsm
  attention = 47.835 * scale * scale
  return tsm + (GMACS['rnl'] - GMACS['tsm'] - 47.835) * scale + attention


def xla_options(preset):
  """XLA:CPU compiler options by name: 'default' (XLA's: YNNPACK for convolutions, dots and
  reductions), 'train' (rnl_jax.sharding.compiler_options(): YNNPACK for dots and reductions only),
  'eigen' (no YNNPACK), 'onednn' (oneDNN custom calls for matmuls and convolutions)."""
  from rnl_jax import sharding  # pylint: disable=import-outside-toplevel

  return {
      'default': None,
      'train': sharding.compiler_options(),
      'eigen': {'xla_cpu_experimental_ynn_fusion_type': ''},
      'onednn': {'xla_cpu_use_onednn': True, 'xla_cpu_experimental_onednn_custom_call': True},
  }[preset]


def fixture():
  """(parity_fixture module, spec) of the parity fixture in tests/data/parity/k400_8f."""
  sys.path.insert(0, str(REPO))
  from tests import parity_fixture  # pylint: disable=import-outside-toplevel

  return parity_fixture, parity_fixture.load_spec('k400_8f')


def fixture_state_dict():
  """{torch key without 'module.': np.ndarray} of the parity fixture's checkpoint."""
  tensors, spec = fixture()
  return {k[len('module.') :]: v for k, v in tensors.state_dict(spec).items()}


def _jax_variables(model):
  """The fixture's weights for `model` (its subset for TSM) as device arrays, rebuilt and converted in
  this process (a --case run without a 'checkpoint'). The NumPy copies are dropped, but glibc keeps
  their freed heap (~0.1-0.2 GB of RSS, README): main() has cases load checkpoint files instead."""
  from flax import traverse_util  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from rnl_jax import convert  # pylint: disable=import-outside-toplevel
  from rnl_jax.models.tsn import abstract_variables  # pylint: disable=import-outside-toplevel

  variables, _ = convert.convert_state_dict(fixture_state_dict())
  flat = traverse_util.flatten_dict(variables)
  keep = traverse_util.flatten_dict(abstract_variables(model))
  return traverse_util.unflatten_dict({k: jnp.array(flat[k]) for k in keep})


def write_checkpoints(out_dir, frameworks):
  """The fixture as each framework's users hold it, for the cases to load from disk: the original's
  `.pth.tar` (torch.save, what its main.py loads) and this port's converted checkpoints (RNL, and
  TSM = its subset; what rnl_jax.protocol and classify load). {name: path}."""
  out_dir = pathlib.Path(out_dir)
  paths = {}
  if 'torch' in frameworks:
    tensors, spec = fixture()
    paths['torch_rnl'] = tensors.write_checkpoint(spec, out_dir / 'torch')
  if 'jax' in frameworks:
    from flax import traverse_util  # pylint: disable=import-outside-toplevel
    from rnl_jax import convert  # pylint: disable=import-outside-toplevel
    from rnl_jax.checkpoint import save_checkpoint  # pylint: disable=import-outside-toplevel
    from rnl_jax.models import build_model  # pylint: disable=import-outside-toplevel
    from rnl_jax.models.tsn import Architecture, abstract_variables  # pylint: disable=import-outside-toplevel

    variables, arch = convert.convert_state_dict(fixture_state_dict())
    flat = traverse_util.flatten_dict(variables)
    for name in ('rnl', 'tsm'):
      arch = Architecture.from_variant(name, 400)
      keep = traverse_util.flatten_dict(abstract_variables(build_model(arch)))
      paths[f'jax_{name}'] = save_checkpoint(
          str(out_dir / f'jax_{name}'),
          traverse_util.unflatten_dict({k: flat[k] for k in keep}),
          architecture=arch,
      )
  return paths


def _random_variables(model):
  """Fan-in-scaled normal weights, BN mean 0 / variance 1, as device arrays (no fixture needed)."""
  from flax import traverse_util  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from rnl_jax.models.tsn import abstract_variables  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(0)
  out = {}
  for path, leaf in traverse_util.flatten_dict(abstract_variables(model)).items():
    if path[-1] in ('var', 'scale'):
      value = np.ones(leaf.shape, np.float32)
    elif path[-1] in ('mean', 'bias'):
      value = np.zeros(leaf.shape, np.float32)
    else:
      value = rng.standard_normal(leaf.shape, np.float32) / np.sqrt(
          max(1, np.prod(leaf.shape[:-1]))
      )
    out[path] = jnp.asarray(value, leaf.dtype)
  return traverse_util.unflatten_dict(out)


def _jax_device_peak_gb():
  """Peak bytes the JAX allocator held on device 0 (GB), or None where it does not say (CPU)."""
  import jax  # pylint: disable=import-outside-toplevel

  stats = jax.devices()[0].memory_stats() or {}
  return stats['peak_bytes_in_use'] / 2**30 if 'peak_bytes_in_use' in stats else None


def time_calls(fn, repeats):
  fn()  # warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


# ----------------------------------------------------------------------------------------------------
# one case (in a subprocess)


def jax_case(case, repeats):
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from benchmarks import train_step as train_step_benchmark  # pylint: disable=import-outside-toplevel
  from rnl_jax.checkpoint import load_checkpoint  # pylint: disable=import-outside-toplevel
  from rnl_jax.models import build_model  # pylint: disable=import-outside-toplevel
  from rnl_jax.models.rnl import eval_attention_method  # pylint: disable=import-outside-toplevel
  from rnl_jax.models.tsn import Architecture  # pylint: disable=import-outside-toplevel

  arch = Architecture.from_variant(case['model'], 400)
  chunk = case.get('query_chunk') or None  # the attention's queries per chunk in this case's mode
  # eval_attention: cases stored before it existed ran query chunks
  attention = case.get('eval_attention', 'chunked')
  kwargs = dict(
      query_chunk=chunk,
      eval_query_chunk=chunk,
      eval_attention=attention,
      normalize_input=True,
      dtype=getattr(jnp, case['dtype']),
      dropout=0.5,
  )
  if case.get('checkpoint'):  # written by write_checkpoints, loaded as rnl_jax.protocol does
    model, variables = load_checkpoint(case['checkpoint'], **kwargs)
  else:
    model = build_model(arch, **kwargs)
    variables = (
        _random_variables(model) if case.get('weights') == 'random' else _jax_variables(model)
    )
  jax.block_until_ready(variables)
  b, t, s = case['batch'], case['frames'], case['size']
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (b, t, s, s, 3), dtype=np.uint8)
  rss_loaded = rss_gb()

  options = xla_options(case['xla'])
  if case['mode'] == 'eval':
    from rnl_jax.models import clip_groups  # pylint: disable=import-outside-toplevel
    # evaluation's own step (passes of clips_per_pass clips; logits cast to float32)
    forward = jax.jit(
        functools.partial(clip_groups.eval_step, model=model, clips=case.get('clips_per_pass', 0)),
        compiler_options=options,
    )
    x = {
        'frames': jnp.asarray(frames),
        'label': jnp.zeros(b, jnp.int32),
        'video_index': jnp.zeros(b, jnp.int32),
        'mask': jnp.ones(b, bool),
    }
    start = time.perf_counter()
    compiled = forward.lower(variables, x).compile()
    compile_s = time.perf_counter() - start
    temp_gb = compiled.memory_analysis().temp_size_in_bytes / 2**30
    setup_peak = start_run_peak()
    times = time_calls(lambda: jax.block_until_ready(compiled(variables, x)), repeats)
  else:
    step, state, data, _ = train_step_benchmark.step_setup(
        model, variables, (b, t, s), 400, options
    )
    start = time.perf_counter()
    compiled = step.lower(state, data).compile()
    compile_s = time.perf_counter() - start
    temp_gb = compiled.memory_analysis().temp_size_in_bytes / 2**30
    setup_peak = start_run_peak()
    holder = [state]

    def run():
      holder[0], metrics = compiled(holder[0], data)
      jax.block_until_ready(metrics)

    times = time_calls(run, repeats)
  return {
      'compile_s': compile_s,
      'times_s': times,
      'rss_loaded_gb': rss_loaded,
      'setup_peak_rss_gb': setup_peak,
      'run_peak_rss_gb': peak_rss_since_reset_gb(),
      'xla_temp_gb': temp_gb,
      'device': str(jax.devices()[0]),
      'device_kind': jax.devices()[0].device_kind,
      'peak_device_gb': _jax_device_peak_gb(),
      'jax': jax.__version__,
      **({'attention': eval_attention_method(attention)} if 'eval_attention' in case else {}),
  }


def torch_case(case, repeats):
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel

  sys.path.insert(0, str(REPO))
  from tests import torch_reference as ref  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(case['threads'])
  device = torch.device(case.get('torch_device', 'cpu'))
  cuda = device.type == 'cuda'
  torch.backends.cudnn.benchmark = True  # as the original's main.py
  b, t, s = case['batch'], case['frames'], case['size']
  model = ref.build_tsn(400, t, depth=50, non_local=case['model'] == 'rnl', dropout=0.5)
  if case['model'] == 'rnl' and case.get('checkpoint'):  # as the original's main.py loads it
    ref.load_fixture_state_dict(
        model, torch.load(case['checkpoint'], weights_only=True)['state_dict']
    )
  elif case['model'] == 'rnl' and case.get('weights') != 'random':
    ref.load_fixture_state_dict(model, fixture_state_dict())
  if case['flavour'] == 'depthwise':
    for m in model.modules():
      if isinstance(m, ref.MaskedDepthwiseConv3d):
        m.forward = lambda x, m=m: F.conv3d(
            x, m.depthwise_kernel(), None, 1, m.padding, 1, m.channels
        )
  model.to(device)
  rng = np.random.default_rng(0)
  x = torch.from_numpy(rng.standard_normal((b, 3 * t, s, s), dtype=np.float32)).to(device)
  rss_loaded = rss_gb()
  # bfloat16 as the original's users would get it: autocast around float32 weights.
  autocast = lambda: torch.autocast(
      device.type, dtype=torch.bfloat16, enabled=case['dtype'] == 'bfloat16'
  )
  sync = torch.cuda.synchronize if cuda else (lambda: None)
  if case['mode'] == 'eval':
    model.eval()

    def run():
      with torch.no_grad(), autocast():
        model(x)
      sync()

  else:
    model.train()
    labels = torch.from_numpy(rng.integers(0, 400, b)).to(device)
    opt = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9, weight_decay=5e-4
    )

    def run():
      opt.zero_grad()
      with autocast():
        loss = F.cross_entropy(model(x).float(), labels)
      loss.backward()
      opt.step()
      sync()

  if cuda:
    torch.cuda.reset_peak_memory_stats()
  setup_peak = start_run_peak()
  times = time_calls(run, repeats)
  return {
      'compile_s': 0.0,
      'times_s': times,
      'rss_loaded_gb': rss_loaded,
      'setup_peak_rss_gb': setup_peak,
      'run_peak_rss_gb': peak_rss_since_reset_gb(),
      'device': torch.cuda.get_device_name() if cuda else 'cpu',
      'peak_device_gb': torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
      'torch': torch.__version__,
  }


def matmul_case(case, repeats):
  """Best GFLOP/s of an n^3 GEMM of random numbers in the case's dtype (n = case['size'])."""
  n, dtype = case['size'], case.get('dtype', 'float32')
  if case['framework'] == 'jax':
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), getattr(jnp, dtype))
    calls = 1 if jax.default_backend() == 'cpu' else 10
    dot = jax.jit(lambda a: [jnp.dot(a + i, a) for i in range(calls)])
    device = jax.devices()[0].device_kind
    times = time_calls(lambda: jax.block_until_ready(dot(a)), repeats)
  else:
    import torch  # pylint: disable=import-outside-toplevel

    torch.set_num_threads(case['threads'])
    cuda = case.get('torch_device', 'cpu') == 'cuda'
    a = torch.randn(n, n, dtype=getattr(torch, dtype), device='cuda' if cuda else 'cpu')
    calls = 10 if cuda else 1
    device = torch.cuda.get_device_name() if cuda else 'cpu'

    def run():
      for _ in range(calls):
        torch.mm(a, a)
      if cuda:
        torch.cuda.synchronize()

    times = time_calls(run, repeats)
  return {
      'compile_s': 0.0,
      'times_s': times,
      'gflops': calls * 2 * n**3 / min(times) / 1e9,
      'device': device,
  }


def run_case(case, repeats):
  fn = {'jax': jax_case, 'torch': torch_case}[case['framework']]
  if case['mode'] == 'matmul':
    fn = matmul_case
  out = dict(case, **fn(case, repeats))
  out['median_s'] = statistics.median(out['times_s'])
  if case['mode'] != 'matmul':
    out['clips_per_s'] = case['batch'] / out['median_s']
  # the whole process (resetting VmHWM after set-up may also reset ru_maxrss)
  out['peak_rss_gb'] = max(
      peak_rss_gb(), out.get('setup_peak_rss_gb', 0.0), out.get('run_peak_rss_gb', 0.0)
  )
  return out


# ----------------------------------------------------------------------------------------------------
# the driver


def cases_from_args(args):
  torch_extra = {'torch_device': args.torch_device} if args.torch_device != 'cpu' else {}
  matmul = {'mode': 'matmul', 'threads': args.threads, 'size': args.matmul_size}
  cases = []
  for f in args.frameworks:
    for dtype in (args.dtypes if f == 'jax' else args.torch_dtypes):
      extra = dict(
          torch_extra if f == 'torch' else {}, **({'dtype': dtype} if dtype != 'float32' else {})
      )
      cases.append(dict(matmul, framework=f, **extra))
  for model in args.models:
    for mode in args.modes:
      batches = args.eval_batches if mode == 'eval' else [args.train_batch]
      for batch in batches:
        common = {
            'model': model,
            'mode': mode,
            'batch': batch,
            'frames': args.frames,
            'size': args.size,
            'threads': args.threads,
            'weights': args.weights,
        }
        if 'jax' in args.frameworks:
          for dtype in args.dtypes:
            case = dict(
                common,
                framework='jax',
                dtype=dtype,
                query_chunk=args.eval_query_chunk if mode == 'eval' else args.query_chunk,
                xla=args.xla_eval if mode == 'eval' else args.xla_train,
            )
            if mode == 'eval' and args.eval_clips_per_pass:
              case['clips_per_pass'] = args.eval_clips_per_pass
            if mode == 'eval' and model == 'rnl' and args.eval_query_chunk:
              case['eval_attention'] = args.eval_attention
            cases.append(case)
        if 'torch' in args.frameworks:
          for dtype in args.torch_dtypes:
            for flavour in (('masked', 'depthwise') if model == 'rnl' else ('-',)):
              cases.append(
                  dict(common, framework='torch', dtype=dtype, flavour=flavour, **torch_extra)
              )
  return cases


CASE_FIELDS = (
    'framework',
    'mode',
    'model',
    'batch',
    'frames',
    'size',
    'dtype',
    'flavour',
    'query_chunk',
    'xla',
    'torch_device',
    'clips_per_pass',
    'eval_attention',
)


def case_key(case):
  """A case (or its result) as a string: the fields that define what is measured."""
  return json.dumps({k: case[k] for k in CASE_FIELDS if k in case}, sort_keys=True)


def run_subprocess(case, repeats, timeout):
  cmd = [
      sys.executable,
      '-m',
      'benchmarks.model',
      '--case',
      json.dumps(case),
      '--repeats',
      str(repeats),
  ]
  env = dict(os.environ, OMP_NUM_THREADS=str(case['threads']))
  proc = subprocess.run(
      cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
  )
  if proc.returncode != 0:
    tail = '\n'.join(proc.stderr.strip().splitlines()[-15:])
    return dict(case, error=f'exit {proc.returncode}: {tail}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(x, digits=2):
  return '-' if x is None else f'{x:.{digits}f}'


def table(results):
  """Markdown table: one row per (model, mode, batch, framework, dtype/flavour), ratios vs torch float32
  (and vs torch in the row's dtype where that differs), FLOP limit and MFU against the measured peak.
  """
  peaks = {}  # dtype -> best matmul GFLOP/s of either framework
  lines = []
  for r in results:
    if r['mode'] == 'matmul' and 'gflops' in r:
      dtype = r.get('dtype', 'float32')
      peaks[dtype] = max(peaks.get(dtype, 0), r['gflops'])
      lines.append(
          f"matmul peak ({r['framework']}, {dtype} {r.get('size', 4096)}^3"
          f"{', ' + r['device'] if r.get('device', 'cpu') != 'cpu' else ''}): {r['gflops']:.1f} GFLOP/s"
      )
  device_memory = any(r.get('peak_device_gb') for r in results)
  lines += [
      '',
      '| model | mode | clips | impl | median s | clips/s | compile s | peak RSS GB '
      '| run peak RSS GB '
      + ('| peak device GB ' if device_memory else '')
      + '| masked / this | depthwise / this | x FLOP limit | MFU % |',
      '|' + '---|' * (14 if device_memory else 13),
  ]
  torch_time = {
      (r['model'], r['mode'], r['batch'], r.get('dtype', 'float32'), r['flavour']): r['median_s']
      for r in results
      if r['framework'] == 'torch' and r['mode'] != 'matmul' and 'median_s' in r
  }
  for r in results:
    if r['mode'] == 'matmul':
      continue
    dtype = r.get('dtype', 'float32')
    method = 'streamed' if r.get('attention') == 'streamed' else 'chunk'  # stored before: chunks
    impl = (
        f'jax {dtype}'
        + (f" {method} {r['query_chunk']}" if r.get('query_chunk') and r['model'] == 'rnl' else '')
        + (
            {-1: ' auto passes', 0: ''}.get(
                r.get('clips_per_pass', 0), f" {r.get('clips_per_pass')} clips/pass"
            )
        )
        + (f" xla {r['xla']}" if r['xla'] != 'train' else '')
        if r['framework'] == 'jax'
        else f"torch {r['flavour']}" + (f' {dtype}' if dtype != 'float32' else '')
    )
    if 'error' in r:
      lines.append(
          f"| {r['model']} | {r['mode']} | {r['batch']} | {impl} | error: "
          f"{r['error'].splitlines()[-1][:80]} ||||||||" + ('|' if device_memory else '')
      )
      continue
    key = (r['model'], r['mode'], r['batch'])
    # the reference in the row's dtype where measured (GPU runs), else in float32 (CPU runs)
    ref_dtype = (
        dtype
        if key + (dtype, '-') in torch_time or key + (dtype, 'masked') in torch_time
        else 'float32'
    )
    masked = torch_time.get(key + (ref_dtype, 'masked' if r['model'] == 'rnl' else '-'))
    depthwise = torch_time.get(key + (ref_dtype, 'depthwise'))
    limit = None
    if peaks.get(dtype):
      macs = (
          gmacs(r['model'], r['frames'], r['size'])
          * r['batch']
          * (3 if r['mode'] == 'train' else 1)
      )
      limit = r['median_s'] / (2 * macs / peaks[dtype])
    lines.append(
        f"| {r['model']} | {r['mode']} | {r['batch']} | {impl} | {_fmt(r['median_s'], 3)} | "
        f"{_fmt(r['clips_per_s'])} | {_fmt(r['compile_s'], 1)} | {_fmt(r['peak_rss_gb'])} | "
        f"{_fmt(r.get('run_peak_rss_gb'))} | "
        + (f"{_fmt(r.get('peak_device_gb'))} | " if device_memory else '')
        + f"{_fmt(masked / r['median_s'] if masked else None)} | "
        f"{_fmt(depthwise / r['median_s'] if depthwise else None)} | {_fmt(limit)} | "
        f'{_fmt(100 / limit if limit else None, 1)} |'
    )
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  split = lambda s: [x for x in s.split(',') if x]
  ints = lambda s: [int(x) for x in split(s)]
  parser.add_argument('--out', default='benchmarks/results/model.json')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--threads', type=int, default=os.cpu_count())
  parser.add_argument('--frameworks', type=split, default=['jax', 'torch'])
  parser.add_argument('--models', type=split, default=['tsm', 'rnl'])
  parser.add_argument('--dtypes', type=split, default=['float32', 'bfloat16'])
  parser.add_argument('--modes', type=split, default=['eval', 'train'])
  parser.add_argument('--eval_batches', type=ints, default=[1, 4])
  parser.add_argument('--train_batch', type=int, default=2)
  parser.add_argument('--frames', type=int, default=8)
  parser.add_argument('--size', type=int, default=224)
  parser.add_argument(
      '--query_chunk',
      type=int,
      default=0,
      help='JAX RNL attention in train cases: 0 plain, > 0 queries per chunk',
  )
  parser.add_argument('--eval_query_chunk', type=int, default=784, help='the same in eval cases')
  parser.add_argument(
      '--eval_attention',
      default='auto',
      choices=['auto', 'streamed', 'chunked'],
      help='JAX RNL eval with --eval_query_chunk: config.model.eval_attention',
  )
  parser.add_argument(
      '--eval_clips_per_pass',
      type=int,
      default=-1,
      help='JAX eval: clips per forward pass (config.model.eval_clips_per_pass; -1 auto)',
  )
  presets = ['default', 'train', 'eigen', 'onednn']
  parser.add_argument('--xla_eval', default='train', choices=presets, help='see xla_options')
  parser.add_argument('--xla_train', default='train', choices=presets, help='see xla_options')
  parser.add_argument(
      '--weights',
      default='fixture',
      choices=['fixture', 'random'],
      help="the parity fixture's checkpoint (tests/data/parity) or random weights",
  )
  parser.add_argument('--torch_device', default='cpu', choices=['cpu', 'cuda'])
  parser.add_argument(
      '--torch_dtypes',
      type=split,
      default=['float32'],
      help='the reference in these dtypes (bfloat16: torch.autocast)',
  )
  parser.add_argument('--matmul_size', type=int, default=4096, help='n of the n^3 GEMM peak')
  parser.add_argument('--timeout', type=int, default=1800, help='seconds per case')
  parser.add_argument('--case', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--write_checkpoints', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.case:
    print(json.dumps(run_case(json.loads(args.case), args.repeats)))
    return
  if args.write_checkpoints:
    print(json.dumps(write_checkpoints(args.write_checkpoints, args.frameworks)))
    return

  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  results = json.loads(out.read_text())['results'] if out.exists() else []
  results = list(
      {case_key(r): r for r in results if 'error' not in r}.values()
  )  # the latest of each
  done = {case_key(r) for r in results}
  todo = [c for c in cases_from_args(args) if case_key(c) not in done]
  checkpoints = tempfile.TemporaryDirectory(prefix='benchmarks_model_')
  if args.weights == 'fixture' and any(c['mode'] != 'matmul' for c in todo):
    # in a child process: Linux keeps ru_maxrss across fork + exec, so a parent that had loaded the
    # fixture would raise every case's reported peak RSS to its own
    frameworks = ','.join(sorted({c['framework'] for c in todo}))
    proc = subprocess.run(
        [
            sys.executable,
            '-m',
            'benchmarks.model',
            '--write_checkpoints',
            checkpoints.name,
            '--frameworks',
            frameworks,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    paths = json.loads(proc.stdout.strip().splitlines()[-1])
    for c in todo:
      c['checkpoint'] = paths.get(f"{c['framework']}_{c.get('model')}")  # torch TSM: random init
  for case in todo:
    start = time.perf_counter()
    r = run_subprocess(case, args.repeats, args.timeout)
    print(
        f"[{time.strftime('%H:%M:%S')}] {case_key(case)}: "
        f"{r.get('error') or round(r['median_s'], 3)} ({time.perf_counter() - start:.0f} s)",
        flush=True,
    )
    results.append(r)
    r['date'] = time.strftime('%Y-%m-%d %H:%M')
    accelerators = sorted({r.get('device_kind', r.get('device', 'cpu')) for r in results} - {'cpu'})
    meta = {
        'machine': f'{_cpu_name()}, {os.cpu_count()} cores'
        + ''.join(f'; {a}' for a in accelerators),
        'command': ' '.join(['python -m benchmarks.model'] + sys.argv[1:]),
    }
    out.write_text(json.dumps({'meta': meta, 'results': results}, indent=1))
  md = table(results)
  out.with_suffix('.md').write_text(md + '\n')
  print(md)


if __name__ == '__main__':
  main()
