"""Fast depthwise 3-D convolution for XLA:CPU (forward and vjp), in pure JAX.

`depthwise_conv3d(x, kernel)` equals
`lax.conv_general_dilated(x, kernel, (1, 1, 1), [(k // 2, k // 2) for k in kernel.shape[:3]],
dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'), feature_group_count=C)` (stride 1, 'same' zero padding,
cross-correlation) but avoids XLA:CPU's grouped convolution, which is very slow there. Two
exact reformulations are used, each the fastest of the forms measured for its kernel size
(docs/performance.md#depthwise-region-conv):

* few taps (kt*kh*kw <= _MAX_FUSED_TAPS, e.g. 3x3x3): the sum over taps of shifted slices times
  per-channel weights, which XLA emits as ONE vectorised loop fusion (C minor). Above ~112 taps
  XLA:CPU stops vectorising that fusion (scalar code), hence the threshold. Custom vjp: the input
  gradient is the same fused sum with the flipped kernel; the kernel gradient (a per-channel
  correlation of x with dy, slow as reductions) is done with FFTs (_fft_kernel_grad).
* many taps (e.g. 3x7x7): the convolution theorem over (H, W) -- per-channel products of rfft2
  spectra, the kt taps applied as shifted sums of spectra -- with circular length L >= H + kh//2 (no
  wrap-around reaches the kept outputs), differentiated by JAX's own FFT rules.

Everything is computed in float32 (or the promoted dtype, e.g. float64 under x64) and cast back, so bfloat16
inputs give bfloat16 outputs/gradients with float32 accumulation. FFT rounding is ~1e-6 relative to the
operand scale. Note that a NaN/Inf anywhere in an (n, c, t) plane spreads over that plane's outputs in the
FFT path, unlike a direct convolution.
"""

import jax
import jax.numpy as jnp

# Largest number of taps summed in one XLA loop fusion; XLA:CPU (jax 0.10) emits scalar code above ~112.
_MAX_FUSED_TAPS = 98


def _fft_len(n: int) -> int:
  """Smallest 7-smooth integer >= n (fast FFT length)."""
  m = n
  while True:
    r = m
    for p in (2, 3, 5, 7):
      while r % p == 0:
        r //= p
    if r == 1:
      return m
    m += 1


def _compute_dtype(dtype):
  return jnp.promote_types(dtype, jnp.float32)


def _fused_taps(x, kernel, out_dtype):
  """sum_{i,j,m} xpad[:, t+i, h+j, w+m, :] * kernel[i, j, m, 0, :] as one loop fusion."""
  kt, kh, kw = kernel.shape[:3]
  t, h, w = x.shape[1:4]
  cdt = _compute_dtype(x.dtype)
  xp = jnp.pad(x.astype(cdt), ((0, 0), (kt // 2,) * 2, (kh // 2,) * 2, (kw // 2,) * 2, (0, 0)))
  k = kernel.astype(cdt)
  out = sum(
      xp[:, i : i + t, j : j + h, m : m + w, :] * k[i, j, m, 0]
      for i in range(kt)
      for j in range(kh)
      for m in range(kw)
  )
  return out.astype(out_dtype)


def _planes(x, lh, lw, cdt):
  """[N, T, H, W, C] -> zero-padded [N, C, T, lh, lw] (FFT axes minor)."""
  h, w = x.shape[2:4]
  xc = jnp.transpose(x.astype(cdt), (0, 4, 1, 2, 3))
  return jnp.pad(xc, ((0, 0), (0, 0), (0, 0), (0, lh - h), (0, lw - w)))


def _shift_sum(a, b, kt, sign):
  """sum_i a[:, :, t + sign*(i - kt//2)] * b[None, :, i, None], a zero outside [0, T)."""
  pt, t = kt // 2, a.shape[2]
  ap = jnp.pad(a, ((0, 0), (0, 0), (pt, pt), (0, 0), (0, 0)))
  out = 0
  for i in range(kt):
    s = pt + sign * (i - pt)
    out = out + ap[:, :, s : s + t] * b[None, :, i, None]
  return out


def _fft_conv(x, kernel):
  """Depthwise correlation via rfft2 over (H, W); differentiable by JAX's FFT rules."""
  kt, kh, kw, _, c = kernel.shape
  h, w = x.shape[2:4]
  lh, lw = _fft_len(h + kh // 2), _fft_len(w + kw // 2)
  cdt = _compute_dtype(x.dtype)
  xf = jnp.fft.rfft2(_planes(x, lh, lw, cdt))  # [N, C, T, lh, lw//2+1]
  kc = jnp.transpose(kernel[:, :, :, 0, :].astype(cdt), (3, 0, 1, 2))  # [C, kt, kh, kw]
  kc = jnp.pad(kc, ((0, 0), (0, 0), (0, lh - kh), (0, lw - kw)))
  kc = jnp.roll(kc, (-(kh // 2), -(kw // 2)), axis=(2, 3))  # tap j at offset (j - kh//2) mod lh
  kf = jnp.conj(jnp.fft.rfft2(kc))  # correlation: conjugate kernel spectrum
  y = jnp.fft.irfft2(_shift_sum(xf, kf, kt, +1), s=(lh, lw))[:, :, :, :h, :w]
  return jnp.transpose(y, (0, 2, 3, 4, 1)).astype(x.dtype)


def _fft_kernel_grad(x, dy, kshape, kdtype):
  """dk[i, j, l, 0, c] = sum_{n,t,h,w} xpad[n, t+i, h+j, w+l, c] * dy[n, t, h, w, c], via FFTs."""
  kt, kh, kw, _, c = kshape
  t, h, w = x.shape[1:4]
  lh, lw = _fft_len(h + kh // 2), _fft_len(w + kw // 2)
  cdt = _compute_dtype(jnp.promote_types(x.dtype, dy.dtype))
  xf = jnp.fft.rfft2(_planes(x, lh, lw, cdt))
  dc = jnp.conj(jnp.fft.rfft2(_planes(dy, lh, lw, cdt)))
  pt = kt // 2
  xp = jnp.pad(xf, ((0, 0), (0, 0), (pt, pt), (0, 0), (0, 0)))
  g = jnp.stack(
      [jnp.sum(xp[:, :, i : i + t] * dc, axis=(0, 2)) for i in range(kt)], 1
  )  # [C, kt, lh, lw//2+1]
  g = jnp.fft.irfft2(g, s=(lh, lw))  # circular lags
  g = jnp.roll(g, (kh // 2, kw // 2), axis=(2, 3))[:, :, :kh, :kw]  # lag j - kh//2 -> index j
  return jnp.transpose(g, (1, 2, 3, 0))[:, :, :, None, :].astype(kdtype)


@jax.custom_vjp
def _fused_conv(x, kernel):
  return _fused_taps(x, kernel, x.dtype)


def _fused_conv_fwd(x, kernel):
  return _fused_taps(x, kernel, x.dtype), (x, kernel)


def _fused_conv_bwd(res, dy):
  x, kernel = res
  dx = _fused_taps(
      dy, kernel[::-1, ::-1, ::-1], x.dtype
  )  # transpose of a correlation: flipped kernel
  return dx, _fft_kernel_grad(x, dy, kernel.shape, kernel.dtype)


_fused_conv.defvjp(_fused_conv_fwd, _fused_conv_bwd)


def depthwise_conv3d(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Depthwise 3-D cross-correlation, stride 1, zero 'same' padding (k//2 per side), channels last.

  Args:
    x: [N, T, H, W, C].
    kernel: [kt, kh, kw, 1, C] (Flax/XLA DHWIO with feature_group_count=C); odd kt, kh, kw.
  Returns:
    [N, T, H, W, C] in x.dtype; equal to lax.conv_general_dilated(..., feature_group_count=C) up to float
    rounding, differentiable in both arguments (method: the module docstring; timings:
    docs/performance.md#depthwise-region-conv).
  """
  kt, kh, kw, one, c = kernel.shape
  if x.ndim != 5 or one != 1 or x.shape[-1] != c:
    raise ValueError(
        f'expected x [N, T, H, W, C] and kernel [kt, kh, kw, 1, C]; got {x.shape}, {kernel.shape}'
    )
  if not (kt % 2 and kh % 2 and kw % 2):
    raise ValueError(f'kernel sizes must be odd for "same" padding k//2; got {kernel.shape[:3]}')
  if kt * kh * kw <= _MAX_FUSED_TAPS:
    return _fused_conv(x, kernel)
  return _fft_conv(x, kernel)
