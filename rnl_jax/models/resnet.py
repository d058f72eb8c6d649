"""ResNet v1.5 (torchvision layout) on frames folded into the batch, with TSM shift and RNL blocks.

Activations are `[N*T, H, W, C]` (row `n*T + t` is frame t of clip n). Padding is explicit and
symmetric as in PyTorch ('SAME' in XLA is asymmetric for stride 2 and breaks parity).
"""

import functools
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from rnl_jax.models.layers import BatchNorm, kaiming_normal_fan_out, materialize, stat_dtype
from rnl_jax.models.pooling import max_pool
from rnl_jax.models.rnl import AttentionSettings, ChannelGate, RegionNonLocal
from rnl_jax.models.temporal_shift import temporal_shift

# depth -> (bottleneck?, blocks per stage)
STAGES = {
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
}
WIDTHS = (64, 128, 256, 512)  # stage widths of the released models (width=64)
# (stage, block) -> (channel gate?, region kernel (t, h, w)); docs/original.md §1.4. Positions a
# shallower network lacks are skipped (ResNet-18 has only layer2.0 and layer3.0).
NONLOCAL_LAYOUT = {
    (2, 0): (True, (3, 7, 7)),
    (2, 2): (False, (3, 7, 7)),
    (3, 0): (False, (3, 3, 3)),
    (3, 2): (False, (3, 3, 3)),
    (3, 4): (False, (3, 3, 3)),
}
SHIFT_PLACES = ('blockres', 'block')


def is_shifted(depth: int, shift_place, block: int) -> bool:
  """Whether block `block` of a stage is shifted: every block, except that 'blockres' shifts only
  even-indexed blocks when layer3 has >= 23 blocks (ResNet-101), as the TSM code does."""
  if shift_place is None:
    return False
  return shift_place == 'block' or STAGES[depth][1][2] < 23 or block % 2 == 0


def nonlocal_positions(depth: int):
  """{(stage, block): (gate, kernel)} of the RNL blocks that exist at this depth."""
  blocks = STAGES[depth][1]
  return {pos: v for pos, v in NONLOCAL_LAYOUT.items() if pos[1] < blocks[pos[0] - 1]}


class Block(nn.Module):
  """Basic or bottleneck residual block; optional shift on its input and RNL modules on its output.

  `shift`: None, 'blockres' (residual branch's conv1 input only) or 'block' (the whole block input,
  identity path included). `nonlocal_kernel` set: the block's output (after the residual ReLU)
  goes through the channel gate (if `gate`) and then the region non-local block.
  """

  width: int
  stride: int
  bottleneck: bool
  downsample: bool
  num_segments: int
  shift: Optional[str] = None
  shift_div: int = 8
  gate: bool = False
  nonlocal_kernel: Optional[tuple] = None
  attention: AttentionSettings = AttentionSettings()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    conv = functools.partial(
        nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=kaiming_normal_fan_out
    )
    norm = functools.partial(BatchNorm, dtype=self.dtype)
    shift = functools.partial(
        temporal_shift, num_segments=self.num_segments, shift_div=self.shift_div
    )
    if self.shift == 'block':
      x = shift(x)
    h = shift(x) if self.shift == 'blockres' else x
    out = 4 * self.width if self.bottleneck else self.width
    if self.bottleneck:
      h = nn.relu(norm(name='bn1')(conv(self.width, (1, 1), name='conv1')(h), train))
      h = conv(
          self.width, (3, 3), (self.stride, self.stride), padding=((1, 1), (1, 1)), name='conv2'
      )(h)
      h = nn.relu(norm(name='bn2')(h, train))
      h = norm(name='bn3')(conv(out, (1, 1), name='conv3')(h), train)
    else:
      h = conv(
          self.width, (3, 3), (self.stride, self.stride), padding=((1, 1), (1, 1)), name='conv1'
      )(h)
      h = nn.relu(norm(name='bn1')(h, train))
      h = norm(name='bn2')(conv(out, (3, 3), padding=((1, 1), (1, 1)), name='conv2')(h), train)
    identity = x
    if self.downsample:
      # A strided 1x1 conv reads only every stride-th pixel: subsampling first is the same sum, and
      # XLA:CPU then computes the weight gradient on the small tensor instead of a dilated
      # convolution over the full-resolution input (docs/performance.md#cpu-training-levers).
      s = self.stride
      identity = conv(out, (1, 1), padding='VALID', name='downsample_0')(x[:, ::s, ::s, :])
      identity = norm(name='downsample_1')(identity, train)
    y = nn.relu(h + identity)
    if self.nonlocal_kernel is not None:
      if self.gate:
        y = ChannelGate(self.num_segments, dtype=self.dtype, name='cg')(y, train)
      y = RegionNonLocal(
          self.num_segments, self.nonlocal_kernel, self.attention, dtype=self.dtype, name='nl'
      )(y, train)
    # Stored once: every later block's fusions would recompute this chain (layers.materialize).
    last_norm = 'bn3' if self.bottleneck else 'bn2'
    return materialize(y, self.variables['params'][last_norm]['scale'][0])


class ResNet(nn.Module):
  """Backbone: `[N*T, H, W, 3]` -> pooled per-frame features `[N*T, 512 * expansion]`."""

  depth: int = 50
  num_segments: int = 8
  shift_place: Optional[str] = 'blockres'
  shift_div: int = 8
  non_local: bool = True
  width: int = 64
  attention: AttentionSettings = AttentionSettings()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    bottleneck, blocks = STAGES[self.depth]
    widths = [w * self.width // 64 for w in WIDTHS]
    x = nn.Conv(
        self.width,
        (7, 7),
        (2, 2),
        padding=((3, 3), (3, 3)),
        use_bias=False,
        dtype=self.dtype,
        kernel_init=kaiming_normal_fan_out,
        name='conv1',
    )(x)
    x = nn.relu(BatchNorm(dtype=self.dtype, name='bn1')(x, train))
    x = max_pool(x, 3, 2, 1)  # pads with -inf; on CPU a cheaper gradient (pooling.py)
    nl = nonlocal_positions(self.depth) if self.non_local else {}
    in_ch = self.width
    for stage, (width, count) in enumerate(zip(widths, blocks), start=1):
      out = 4 * width if bottleneck else width
      for i in range(count):
        stride = 2 if (i == 0 and stage > 1) else 1
        gate, kernel = nl.get((stage, i), (False, None))
        x = Block(
            width,
            stride,
            bottleneck,
            downsample=(i == 0 and (stride != 1 or in_ch != out)),
            num_segments=self.num_segments,
            shift=self.shift_place if is_shifted(self.depth, self.shift_place, i) else None,
            shift_div=self.shift_div,
            gate=gate,
            nonlocal_kernel=kernel,
            attention=self.attention,
            dtype=self.dtype,
            name=f'layer{stage}_{i}',
        )(x, train)
        in_ch = out
    return jnp.mean(x.astype(stat_dtype(x.dtype)), axis=(1, 2))  # global average pool
