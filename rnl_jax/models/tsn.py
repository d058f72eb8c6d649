"""TSN wrapper: frames folded into the batch, backbone, dropout + `new_fc`, average consensus."""

import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnl_jax.models.layers import stat_dtype
from rnl_jax.models.resnet import SHIFT_PLACES, STAGES, ResNet
from rnl_jax.models.rnl import AttentionSettings

INPUT_MEAN = (0.485, 0.456, 0.406)
INPUT_STD = (0.229, 0.224, 0.225)
VARIANTS = {  # name -> (shift_place, non_local)
    'tsn': (None, False),
    'tsm': ('blockres', False),
    'rnl': ('blockres', True),
}


class TSN(nn.Module):
  """Video classifier: `[N, T, H, W, 3]` clips -> `[N, num_classes]` segment-averaged logits.

  Attributes:
    num_classes: K.
    depth: ResNet depth, 18 / 34 / 50 / 101.
    width: channels of the stem and the first stage (64 in every released model; smaller values
      give CPU-sized networks for experiments, e.g. 16: 1/16 of the FLOPs).
    shift_place: None (TSN), 'blockres' (TSM default) or 'block'.
    shift_div: 1/shift_div of the channels shift each way.
    non_local: insert the channel gate and region non-local blocks (RNL).
    dropout: rate on the pooled per-frame features (train only; needs a 'dropout' rng).
    attention: how the RNL blocks bound the attention's memory in training and evaluation
      (rnl_jax.models.rnl.AttentionSettings: query_chunk, eval_query_chunk, eval_attention); the
      same function either way.
    normalize_input: if True, inputs are pixels in [0, 255] (uint8 or float) and are normalised
      here, inside the jitted computation, with the ImageNet mean/std; if False they are already
      normalised floats.
    dtype: compute dtype (parameters and BN statistics stay float32).
  Works for any T and any input size (global pooling); T is read from the input.
  The pre-classifier features `[N*T, D]` are sown as `intermediates/features`.
  """

  num_classes: int
  depth: int = 50
  shift_place: Optional[str] = 'blockres'
  shift_div: int = 8
  non_local: bool = True
  width: int = 64
  dropout: float = 0.5
  attention: AttentionSettings = AttentionSettings()
  normalize_input: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    n, t, h, w, c = x.shape
    if self.normalize_input:
      acc = stat_dtype(self.dtype)
      x = (x.astype(acc) / 255.0 - jnp.asarray(INPUT_MEAN, acc)) / jnp.asarray(INPUT_STD, acc)
    x = x.astype(self.dtype).reshape(n * t, h, w, c)  # [N*T, H, W, 3]
    f = ResNet(
        self.depth,
        t,
        self.shift_place,
        self.shift_div,
        self.non_local,
        width=self.width,
        attention=self.attention,
        dtype=self.dtype,
        name='base_model',
    )(
        x, train
    )  # [N*T, D]
    self.sow('intermediates', 'features', f)
    if self.dropout > 0:
      f = nn.Dropout(self.dropout, deterministic=not train)(f)
    logits = nn.Dense(
        self.num_classes,
        dtype=self.dtype,
        kernel_init=nn.initializers.normal(0.001),
        bias_init=nn.initializers.zeros,
        name='new_fc',
    )(
        f
    )  # [N*T, K]
    return jnp.mean(logits.astype(stat_dtype(self.dtype)).reshape(n, t, -1), axis=1)  # [N, K]


@dataclasses.dataclass(frozen=True)
class Architecture:
  """What a checkpoint's weights fix: everything needed to rebuild the matching model."""

  num_classes: int
  depth: int = 50
  shift_place: Optional[str] = 'blockres'
  shift_div: int = 8
  non_local: bool = True
  width: int = 64

  def __post_init__(self):
    if self.depth not in STAGES:
      raise ValueError(f'depth={self.depth}: expected one of {sorted(STAGES)}')
    if self.shift_place not in (None,) + SHIFT_PLACES:
      raise ValueError(f'shift_place={self.shift_place!r}: expected None or one of {SHIFT_PLACES}')
    if self.num_classes < 1:
      raise ValueError(f'num_classes={self.num_classes} must be >= 1')
    if self.shift_div < 1:
      raise ValueError(f'shift_div={self.shift_div} must be >= 1')
    if self.width < 8 or self.width % 8:
      raise ValueError(f'width={self.width} must be a multiple of 8 (64 in the released models)')

  @classmethod
  def from_variant(cls, variant: str, num_classes: int, depth: int = 50, **kw):
    if variant not in VARIANTS:
      raise ValueError(f'variant={variant!r}: expected one of {sorted(VARIANTS)}')
    shift_place, non_local = VARIANTS[variant]
    return cls(num_classes, depth, shift_place, non_local=non_local, **kw)

  def to_dict(self):
    return dataclasses.asdict(self)


def build_model(
    arch: Architecture,
    *,
    dropout: float = 0.5,
    query_chunk: Any = None,
    eval_query_chunk: Any = 'same',
    eval_attention: str = 'auto',
    train_attention: str = 'auto',
    normalize_input: bool = False,
    dtype: Any = jnp.float32,
) -> TSN:
  """The TSN for an architecture plus run-time choices that do not change the weights.

  `query_chunk` (None, rows, or 'auto': rnl.train_query_chunk) applies to training and, unless
  `eval_query_chunk` is given, to evaluation too;
  with `eval_attention` and `train_attention` they make the model's AttentionSettings (ValueError
  for an unknown setting, before any trace)."""
  if eval_query_chunk == 'same':
    if query_chunk == 'auto':
      raise ValueError("query_chunk='auto' applies to training only: give eval_query_chunk too")
    eval_query_chunk = query_chunk
  attention = AttentionSettings(
      query_chunk=query_chunk,
      eval_query_chunk=eval_query_chunk,
      eval_attention=eval_attention,
      train_attention=train_attention,
  )
  return TSN(
      num_classes=arch.num_classes,
      depth=arch.depth,
      shift_place=arch.shift_place,
      shift_div=arch.shift_div,
      non_local=arch.non_local,
      width=arch.width,
      dropout=dropout,
      attention=attention,
      normalize_input=normalize_input,
      dtype=dtype,
  )


def abstract_variables(module: nn.Module, x_shape=(1, 1, 32, 32, 3)):
  """{'params', 'batch_stats'} as shape/dtype structs, without computing anything."""
  init = lambda: module.init(jax.random.PRNGKey(0), jnp.zeros(x_shape), train=False)
  shapes = jax.eval_shape(init)
  return {k: shapes[k] for k in ('params', 'batch_stats')}
