"""rnl-jax: Region-based Non-local TSM video classifiers in JAX/Flax.

    model, variables = rnl_jax.load_checkpoint('ckpt_dir')   # or an original .pth.tar
    logits = model.apply(variables, clips, train=False)      # [N, T, H, W, 3] -> [N, K]

The names below are imported lazily, so that data-loading worker processes that import
`rnl_jax.data` do not pay for importing JAX.
"""

import importlib

_EXPORTS = {
    'load_checkpoint': 'rnl_jax.checkpoint',
    'save_checkpoint': 'rnl_jax.checkpoint',
    'build_model': 'rnl_jax.models',
    'Architecture': 'rnl_jax.models',
    'TSN': 'rnl_jax.models',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
