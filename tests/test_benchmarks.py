"""benchmarks.model's case list and table arithmetic (ratios, FLOP limit, MFU), on made-up results;
benchmarks.conv3x3's polyphase input gradient against autodiff; benchmarks.ab_step's sides and
statistics."""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import ab_step, conv3x3
from benchmarks import model as bm
from rnl_jax.models.resnet import ResNet


def _args(**overrides):
  args = dict(
      frameworks=['jax', 'torch'],
      models=['rnl'],
      modes=['eval'],
      dtypes=['bfloat16'],
      torch_dtypes=['bfloat16'],
      eval_batches=[16],
      train_batch=16,
      frames=8,
      size=224,
      threads=2,
      weights='random',
      eval_query_chunk=784,
      query_chunk=0,
      xla_eval='train',
      xla_train='train',
      torch_device='cuda',
      matmul_size=8192,
      eval_clips_per_pass=-1,
      eval_attention='auto',
  )
  args.update(overrides)
  return argparse.Namespace(**args)


def test_gpu_cases_name_the_device_and_dtype_and_cpu_keys_stay_as_before():
  cases = bm.cases_from_args(_args())
  torch_cases = [c for c in cases if c['framework'] == 'torch' and c['mode'] != 'matmul']
  assert {(c['flavour'], c['dtype'], c['torch_device']) for c in torch_cases} == {
      ('masked', 'bfloat16', 'cuda'),
      ('depthwise', 'bfloat16', 'cuda'),
  }
  assert [c.get('dtype') for c in cases if c['mode'] == 'matmul'] == ['bfloat16', 'bfloat16']
  cpu = bm.cases_from_args(_args(torch_device='cpu', torch_dtypes=['float32'], dtypes=['float32']))
  # CPU runs keep the keys of the results already stored (no torch_device, no float32 matmul dtype)
  assert all('torch_device' not in c for c in cpu)
  assert all('dtype' not in c for c in cpu if c['mode'] == 'matmul')
  assert len({bm.case_key(c) for c in cases + cpu}) == len(cases) + len(cpu)
  jax_eval = [c for c in cpu if c['framework'] == 'jax' and c['mode'] == 'eval']
  assert [c['clips_per_pass'] for c in jax_eval] == [-1]  # the trainer's default (auto)
  assert 'clips_per_pass' not in bm.cases_from_args(_args(eval_clips_per_pass=0))[2]
  # RNL eval cases name the attention setting (stored ones without it ran query chunks)
  assert [c['eval_attention'] for c in jax_eval] == ['auto']
  assert all(
      'eval_attention' not in c
      for c in bm.cases_from_args(_args(models=['tsm'], modes=['eval', 'train']))
  )


def test_table_ratios_flop_limit_and_mfu():
  common = dict(
      model='rnl', mode='eval', batch=16, frames=8, size=224, compile_s=1.0, peak_rss_gb=1.0
  )
  results = [
      dict(framework='jax', mode='matmul', dtype='bfloat16', size=8192, gflops=800_000.0),
      dict(
          common,
          framework='jax',
          dtype='bfloat16',
          query_chunk=784,
          xla='train',
          median_s=0.02,
          clips_per_s=800.0,
          peak_device_gb=1.1,
      ),
      dict(
          common,
          framework='torch',
          dtype='bfloat16',
          flavour='masked',
          median_s=0.06,
          clips_per_s=16 / 0.06,
          peak_device_gb=6.6,
      ),
      dict(
          common,
          framework='torch',
          dtype='bfloat16',
          flavour='depthwise',
          median_s=0.05,
          clips_per_s=16 / 0.05,
          peak_device_gb=6.6,
      ),
  ]
  lines = bm.table(results).splitlines()
  header = next(line for line in lines if line.startswith('| model')).strip('| ').split(' | ')
  rows = [
      dict(zip(header, line.strip('| ').split(' | '))) for line in lines if line.startswith('| rnl')
  ]
  jax_row = rows[0]
  assert jax_row['impl'] == 'jax bfloat16 chunk 784' and jax_row['peak device GB'] == '1.10'
  assert (jax_row['masked / this'], jax_row['depthwise / this']) == ('3.00', '2.50')
  flop_time = 2 * 89.3e9 * 16 / 800_000e9  # s at the matmul peak
  assert float(jax_row['x FLOP limit']) == pytest.approx(0.02 / flop_time, abs=0.01)
  assert float(jax_row['MFU %']) == pytest.approx(100 * flop_time / 0.02, abs=0.1)
  assert rows[1]['impl'] == 'torch masked bfloat16' and rows[1]['masked / this'] == '1.00'
  streamed = bm.table([dict(results[1], attention='streamed')] + results[2:]).splitlines()
  assert any(
      line.startswith('| rnl | eval | 16 | jax bfloat16 streamed 784 |') for line in streamed
  )


@pytest.mark.parametrize('shape', [(2, 8, 6, 3), (1, 4, 4, 5), (3, 2, 10, 4)])
def test_polyphase_gradients_equal_autodiff_float64(shape):
  with jax.enable_x64(True):
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(k[0], shape, jnp.float64)
    w = jax.random.normal(k[1], (3, 3, shape[-1], 7), jnp.float64)
    y0, vjp0 = jax.vjp(lambda x, w: conv3x3.as_conv(x, w, 2), x, w)
    y1, vjp1 = jax.vjp(lambda x, w: conv3x3.as_polyphase(x, w, 2), x, w)
    g = jax.random.normal(k[2], y0.shape, jnp.float64)
    (dx0, dw0), (dx1, dw1) = vjp0(g), vjp1(g)
    # the input gradient is the polyphase one: no convolution over a zero-inserted input
    grad_jaxpr = str(jax.make_jaxpr(lambda x: vjp1(g)[0])(x))
  assert 'lhs_dilation=(2, 2)' not in grad_jaxpr
  np.testing.assert_array_equal(y1, y0)
  np.testing.assert_allclose(dx1, dx0, rtol=0, atol=1e-12)
  np.testing.assert_allclose(dw1, dw0, rtol=0, atol=1e-12)


def test_ab_overrides_reach_their_side_only_and_typos_fail():
  config = ab_step.bench.load_config('configs/tiny.py')
  ab_step.apply_override(config, 'model.width=16')
  ab_step.apply_override(config, 'model.variant=tsm')
  assert config.model.width == 16 and config.model.variant == 'tsm'
  with pytest.raises(KeyError, match='model.widht: no such config key'):
    ab_step.apply_override(config, 'model.widht=16')
  with pytest.raises(KeyError, match='modle: no such config key'):
    ab_step.apply_override(config, 'modle.width=16')
  with pytest.raises(ValueError, match='expected path=value'):
    ab_step.apply_override(config, 'model.width')


def test_ab_paired_summary_and_verdicts():
  s = ab_step.paired_summary([4.0, 4.4, 3.9, 4.2], [3.8, 4.2, 3.75, 4.0])  # drift, B always ahead
  assert s['b_faster'] == 4 and s['verdict'] == 'B faster'
  assert s['diff_mean'] == pytest.approx(-0.1875) and s['diff_median'] == pytest.approx(-0.2)
  assert ab_step.paired_summary([4.0, 4.4, 3.9], [4.3, 4.1, 3.9])['verdict'] == 'not resolved'
  assert ab_step.paired_summary([1.0, 1.1, 1.0], [1.2, 1.3, 1.25])['verdict'] == 'B slower'


def test_ab_sides_are_two_programs_alternated():
  common = ['model.variant=tsn', 'num_segments=2']
  sides = {
      'A': ab_step.build('configs/tiny.py', common + ['model.width=8'], [], 2),
      'B': ab_step.build('configs/tiny.py', common + ['model.width=16'], [], 2),
  }
  kernel = lambda side: side[1].params['base_model']['conv1']['kernel'].shape[-1]
  assert (kernel(sides['A']), kernel(sides['B'])) == (8, 16)  # each side got its own override
  times = ab_step.compare(sides, 3)
  assert [len(t) for t in times.values()] == [3, 3]
  assert sides['A'][1].step == sides['B'][1].step == 5  # 2 warm-up + 3 timed steps each


def test_ab_levers_off_reach_the_traced_model_and_are_restored():
  # Each lever switched off must change the program traced within (else an A/B of it compares a
  # program with itself) and come back after.
  model = ResNet(depth=18, num_segments=2, width=8, non_local=False)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, 3))
  variables = model.init(jax.random.PRNGKey(1), x, train=False)

  def grad_jaxpr():
    def loss(params):
      y, _ = model.apply({**variables, 'params': params}, x, train=True, mutable=['batch_stats'])
      return jnp.sum(y**2)

    return str(jax.make_jaxpr(jax.grad(loss))(variables['params']))

  on = grad_jaxpr()
  with ab_step.levers_off(['store_block_outputs', 'pool_tap_index']):
    off = grad_jaxpr()
  # ResNet-18: 8 blocks, each output divided by one on CPU, gradient included
  assert on.count(' div ') - off.count(' div ') == 16
  assert 'select_and_scatter' in off and 'select_and_scatter' not in on
  assert grad_jaxpr() == on
  with pytest.raises(KeyError, match=r"\['store_outputs'\]: no such lever"):
    with ab_step.levers_off(['store_outputs']):
      pass
